"""cli/prep.py: `partfer synth` and `partfer prep`, also run alone as `python -m partfer.data_prep`."""
from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from partfer.cli.prep import add_prep_parser, add_synth_parser, main, run_prep, run_synth
from partfer.data_prep.prepared import find_prepared, load_prepared



def test_parsers_mount_on_any_subparsers_object():
    parser = argparse.ArgumentParser(prog="partfer")
    sub = parser.add_subparsers(dest="command", required=True)
    add_synth_parser(sub)
    add_prep_parser(sub)
    args = parser.parse_args(["synth", "--out", "x", "--subjects", "4", "--per-class", "2", "--seed", "7", "--size", "64"])
    assert (args.func, args.layout, args.subjects, args.per_class, args.seed, args.size) == (run_synth, "jaffe", 4, 2, 7, 64)
    args = parser.parse_args(["prep", "--dataset", "ck48", "--root", "r", "--layout", "folder",
                              "--subject-regex", "^(S\\d+)_", "--detector", "none", "--crop-size", "96"])
    assert (args.func, args.layout, args.subject_regex, args.detector, args.annotator, args.crop_size, args.out) == (
        run_prep, "folder", "^(S\\d+)_", "none", "dlib", 96, "out")


def test_synth_writes_a_set_and_refuses_to_overwrite(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "s"), "--subjects", "2", "--per-class", "1", "--size", "64"]) == 0
    assert "14 images (2 subjects, 7 classes" in capsys.readouterr().out
    assert len(list((tmp_path / "s").glob("*.tiff"))) == 14
    assert main(["synth", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("partfer synth: error: output folder is not empty") and err.count("\n") == 1


def test_prep_whole_run_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["prep", "--dataset", "jaffe", "--root", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err == f"partfer prep: error: data set root does not exist: {tmp_path / 'missing'}\n"
    assert main(["prep", "--dataset", "mystery", "--root", str(tmp_path)]) == 2
    assert "--layout is needed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:     # the detectors are the option's choices
        main(["prep", "--dataset", "jaffe", "--root", str(tmp_path), "--detector", "mtcnn"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'mtcnn'" in capsys.readouterr().err


@pytest.mark.slow
def test_prep_prepares_then_reuses(tmp_path, capsys, shared_ray):
    root = tmp_path / "raw"
    assert main(["synth", "--out", str(root), "--subjects", "2", "--per-class", "1", "--size", "64"]) == 0
    argv = ["prep", "--dataset", "jaffe", "--root", str(root), "--out", str(tmp_path / "out"),
            "--detector", "none", "--annotator", "dataset", "--crop-size", "48", "--no-progress"]
    capsys.readouterr()
    assert main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == find_prepared(tmp_path / "out", "jaffe")[0]
    assert out[1].startswith("jaffe: prepared, 14 images, 0 rejected")
    assert load_prepared(out[0]).images.shape == (14, 48, 48)
    assert main(argv) == 0
    assert "jaffe: reused, 14 images" in capsys.readouterr().out


def test_python_dash_m_partfer_data_prep_runs(tmp_path):
    done = subprocess.run([sys.executable, "-m", "partfer.data_prep", "synth", "--out", str(tmp_path / "s"),
                           "--subjects", "1", "--per-class", "1", "--size", "48", "--classes", "happiness,anger"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "s").glob("*.tiff")) == ["KA.AN1.1.tiff", "KA.HA1.2.tiff"]
