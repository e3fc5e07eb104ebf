"""Building the `partfer` parser imports none of the layers' heavy libraries: they are imported
by the command that runs, so `partfer --help`, a typo or `partfer doctor` answer at once."""
import subprocess
import sys

import pytest

HEAVY = ("torch", "ray", "matplotlib", "pandas", "cv2", "dlib", "triton")


def _imported_after(code: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys\n"
                           f"print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}))"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip().splitlines()[-1])      # a printed list of module names


def test_building_every_commands_options_imports_no_torch_ray_or_matplotlib():
    assert set(_imported_after("from partfer.cli import build_parser; build_parser()")) <= {"cv2", "dlib"}


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["doctor", "--help"], ["bogus"]])
def test_help_and_usage_errors_import_none_of_them(argv):
    code = (f"from partfer.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert _imported_after(code) == []
