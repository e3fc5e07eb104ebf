"""`partfer report RUN_DIR` through `python -m partfer.results` and through add_report_parser."""
import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from partfer.cli.report import add_report_parser

REPO = Path(__file__).resolve().parents[2]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "partfer.results", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_report_command_builds_and_prints_the_path(make_run):
    run = make_run(datasets=("sfew",), cross=(), histories=False)
    done = _run("report", "--embed-images", str(run))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(run / "report.md")
    assert (run / "report.md").is_file() and (run / "tables" / "table1.csv").is_file()
    page = (run / "report.html").read_text()
    # --embed-images: the page carries its figures; only data files stay linked.
    assert 'src="data:image/png;base64,' in page and 'src="figures/' not in page
    assert 'src="confusion/' not in page


def test_missing_plan_is_one_line_error_and_exit_2(tmp_path):
    done = _run("report", str(tmp_path))
    assert done.returncode == 2
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "plan.json" in lines[0] and str(tmp_path) in lines[0]


def test_add_report_parser_registers_a_subcommand(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="partfer")
    add_report_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(tmp_path)])
    assert args.func(args) == 2
    assert "no plan.json" in capsys.readouterr().err


# data_prep's reader of prepared crops and its pure-data modules: pyarrow and numpy only.
ALLOWED_DATA_PREP = {"partfer.data_prep", "partfer.data_prep.errors", "partfer.data_prep.ibug68",
                     "partfer.data_prep.prepared", "partfer.data_prep.schema", "partfer.data_prep.settings"}


def test_results_imports_no_training_stack(tmp_path):
    # Reports must rebuild anywhere: no torch, ray, OpenCV, dlib or other orchestrator modules
    # behind them (of the orchestrator, only the run-record schema, the network recipes and the
    # run's file names); data_prep only for reading prepared face crops (pyarrow + numpy).
    code = ("import sys, partfer.cli.report, partfer.results.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'ray', 'cv2', 'dlib', 'skimage') "
            "or m.startswith(('partfer.data_prep', 'partfer.models')) "
            "or (m.startswith('partfer.orchestrator.') and m not in "
            "('partfer.orchestrator.records', 'partfer.orchestrator.networks', 'partfer.orchestrator.run_files'))))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = set(eval(done.stdout.strip()))     # a printed list of module names
    assert imported <= ALLOWED_DATA_PREP, sorted(imported - ALLOWED_DATA_PREP)


def test_a_plan_naming_models_outside_the_store_is_refused_before_anything_is_written(make_run, tmp_path):
    import json
    import shutil
    run = make_run(datasets=("sfew",), cross=(), histories=False)
    shutil.copytree(run.parent.parent, tmp_path / "other-store")       # another store, its models readable
    plan = json.loads((run / "plan.json").read_text())
    for model in plan["models"][:1]:
        model["dir"] = f"../other-store/{model['dir']}"
    (run / "plan.json").write_text(json.dumps(plan))
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    done = _run("report", str(run))
    assert done.returncode == 2 and done.stdout == "", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"partfer report: error: {run / 'plan.json'}: "), lines
    assert "'../other-store/models/" in lines[0] and "is not inside the store" in lines[0], lines
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before     # nothing written


@pytest.mark.slow
def test_a_write_refused_by_the_disk_is_one_line_naming_the_file_and_nothing_is_half_written(make_run):
    import resource

    def small_files() -> None:          # the kernel refuses (EFBIG) the write() that would pass 4 KiB
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    run = make_run(datasets=("sfew",), cross=(), histories=False)
    done = subprocess.run([sys.executable, "-m", "partfer", "report", str(run)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, preexec_fn=small_files)
    assert done.returncode == 2 and done.stdout == "", done.stderr
    line = done.stderr
    assert line.startswith(f"partfer report: error: {run}/") and line.endswith(": File too large\n"), line
    assert line.count("\n") == 1
    failed = Path(line.split("error: ", 1)[1].rsplit(": File too large", 1)[0])
    assert not failed.exists() and not [p for p in run.rglob("*") if ".tmp-" in p.name]


def _report_files(run: Path) -> dict[str, bytes]:
    names = ["report.md", "report.html", *(f"tables/{p.name}" for p in (run / "tables").iterdir())]
    return {name: (run / name).read_bytes() for name in sorted(names)}


def test_a_copied_run_folder_reads_its_recorded_store_and_reports_identically(make_run, tmp_path):
    # Users copy run folders off clusters: the copy sits in a runs/ folder of its own whose parent
    # holds no models, and the store plan.json records does.
    run = make_run(datasets=("sfew",), cross=(), histories=False)
    assert _run("report", str(run)).returncode == 0
    copy = tmp_path / "laptop" / "runs" / run.name
    shutil.copytree(run, copy)
    done = _run("report", str(copy))
    assert done.returncode == 0, done.stderr
    assert _report_files(copy) == _report_files(run)
    assert "INCOMPLETE" not in (copy / "report.md").read_text()


def test_no_predictions_exits_1_and_keeps_the_old_report_byte_for_byte(make_run):
    run = make_run(datasets=("sfew",), cross=(), histories=False)
    assert _run("report", str(run)).returncode == 0
    before = _report_files(run)
    store = run.parent.parent
    (store / "models").rename(store / "models-moved")
    done = _run("report", str(run))
    assert done.returncode == 1
    assert done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "none of the" in lines[0] and "usable predictions" in lines[0]
    assert "--store" in lines[0] and str(store) in lines[0]
    assert _report_files(run) == before
    assert not [p for p in run.iterdir() if p.name.startswith(".")], "a staging folder was left behind"
    # --store names where the models went: the same report again.
    moved = store.parent / "elsewhere"
    (moved / "models").parent.mkdir()
    (store / "models-moved").rename(moved / "models")
    done = _run("report", "--store", str(moved), str(run))
    assert done.returncode == 0, done.stderr
    assert _report_files(run) == before

