from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from partfer.data_prep.errors import PreparedDataError
from partfer.data_prep.prepared import find_prepared, load_prepared, read_manifest

REPO = Path(__file__).resolve().parents[2]


def test_reading_prepared_data_needs_neither_ray_nor_opencv_nor_dlib():
    code = ("import sys, data_prep.prepared, data_prep.schema, data_prep.ibug68, data_prep.labels; "
            "heavy = [m for m in ('ray', 'cv2', 'dlib', 'torch') if m in sys.modules]; "
            "print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unfinished_or_malformed_directories_are_refused(tmp_path):
    folder = tmp_path / "prepared" / "set-0123456789ab"
    (folder / "data").mkdir(parents=True)
    with pytest.raises(PreparedDataError, match="no _SUCCESS"):
        read_manifest(folder)
    assert find_prepared(tmp_path, "set") == []
    (folder / "_SUCCESS").write_text("")
    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(PreparedDataError, match="cannot read"):
        load_prepared(folder)
    (folder / "manifest.json").write_text("{}")
    with pytest.raises(PreparedDataError, match="no parquet files"):
        load_prepared(folder)
    assert find_prepared(tmp_path, "set") == [str(folder)]
