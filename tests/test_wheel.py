"""`pip install .` works anywhere: the wheel holds one import name, `partfer`, with its configs, and
an installed (not editable) partfer runs from a folder whose own `models.py` would shadow a
top-level `models` package."""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from cli_runner import REPO, child_env, report_path

pytestmark = pytest.mark.slow

NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build", "dist", "demo_out",
                                    "partfer_store", ".gpu", ".pytest_cache", "tests", "bench")


def _run(args, cwd, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the source tree (the build writes beside its sources)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(REPO, src, ignore=NOT_SOURCE)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(work / "dist"), str(src)], cwd=work)
    (built,) = (work / "dist").glob("partfer-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment with the wheel installed (no -e). Its dependencies are this
    environment's packages, reached by a path entry; partfer itself only from the wheel."""
    venv = tmp_path_factory.mktemp("venv") / "fresh"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    py = venv / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    # a plain path line: its folder's own .pth files (this checkout's editable hook) are not run
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], cwd=venv.parent)
    return venv


def test_the_wheel_holds_one_import_name_and_its_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"partfer", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for config in ("paper.yaml", "demo.yaml", "synthetic.yaml", "run.yaml", "hardware/gpu.yaml", "hardware/cpu.yaml",
                   "hardware/cluster.yaml"):
        assert f"partfer/configs/{config}" in names
    assert not [n for n in names if n.startswith(("partfer/tests/", "partfer/bench/"))]
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["partfer"]


def test_an_installed_partfer_describes_and_runs_beside_a_users_models_py(fresh_venv, tmp_path):
    work = tmp_path / "user"
    work.mkdir()
    (work / "models.py").write_text("raise ImportError('the user\\'s own models.py was imported')\n")
    (work / "results").mkdir()                       # and a folder named like one of our rooms
    py, partfer = fresh_venv / "bin" / "python", fresh_venv / "bin" / "partfer"

    where = _run([str(py), "-c", "import partfer, partfer.models.packed as m; print(partfer.__file__, m.__file__)"],
                 cwd=work).stdout.split()
    assert all(str(fresh_venv) in path for path in where), where

    described = _run([str(partfer), "describe"], cwd=work).stdout
    assert "parameters" in described.lower()

    config = work / "tiny.yaml"
    config.write_text((REPO / "tests" / "configs" / "tiny.yaml").read_text())   # includes demo.yaml by name
    run = _run([str(partfer), "run", "--config", str(config), "--out", str(work / "store"),
                "--networks", "baseline,el", "--epochs-scale", "0.1", "-q"], cwd=work, timeout=900)
    report = report_path(run.stdout)
    assert report.is_file() and (report.parent / "tables" / "table1.csv").is_file()
