"""Ray's INFO lines stay off the console unless -v; its warnings always show; Ray Data's file log
keeps everything."""
import subprocess
import sys

import pytest

CODE = """
import logging, sys
import ray, ray.data
from partfer.data_prep.ray_console import set_ray_verbose
set_ray_verbose({verbose})
for name in ("ray", "ray.data"):
    logging.getLogger(name).info(f"INFO-LINE {{name}}")
    logging.getLogger(name).warning(f"WARNING-LINE {{name}}")
files = [h for h in logging.getLogger("ray.data").handlers if not isinstance(h, logging.StreamHandler)]
print("file handlers", len(files), min((h.level for h in files), default=-1))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_ray_info_lines_only_with_verbose(verbose):
    done = subprocess.run([sys.executable, "-c", CODE.format(verbose=verbose)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    shown = done.stdout + done.stderr
    for name in ("ray", "ray.data"):
        assert f"WARNING-LINE {name}" in shown
        assert (f"INFO-LINE {name}" in shown) is verbose, shown
    assert "file handlers 1 0" in done.stdout       # ray-data.log still gets every level
