"""The provenance block: code, libraries (the run's and the prepared data's), device and cost."""
import json
from dataclasses import replace
from pathlib import Path

from partfer.orchestrator.records import RunPlan
from partfer.results.provenance import gpu_hours, provenance_markdown, provenance_rows
from run_builder import PAPER_SETTINGS

VERSIONS = {"python": "3.11.9", "torch": "2.14.1", "ray": "2.60.0", "numpy": "2.4.6",
            "partfer": "0.1.0", "git_commit": "0123456789abcdef0123456789abcdef01234567",
            "git_dirty": False}


def _plan(make_run, settings: dict, manifest_versions: dict | None) -> RunPlan:
    run = make_run(settings=settings, datasets=("sfew",), cross=(), histories=False, prepared=True)
    plan = RunPlan.from_json((run / "plan.json").read_text())
    if manifest_versions is not None:
        for info in plan.datasets.values():
            path = Path(info.prepared) / "manifest.json"
            manifest = json.loads(path.read_text())
            path.write_text(json.dumps(dict(manifest, versions=manifest_versions)))
    return plan


def test_gpu_run_states_every_version_and_its_gpu_hours(make_run):
    settings = dict(PAPER_SETTINGS, versions=VERSIONS, gpus=2, wall_seconds=5400.0,
                    train_images=7200000)
    plan = _plan(make_run, settings, {"opencv-python-headless": "4.14.0.94", "dlib-bin": "20.0.1"})
    rows = dict(provenance_rows(plan))
    assert rows["partfer"] == "0.1.0"
    assert rows["git commit"] == f"`{VERSIONS['git_commit']}`"
    assert (rows["PyTorch"], rows["Ray"]) == ("2.14.1", "2.60.0")
    assert (rows["OpenCV (prepared data)"], rows["dlib (prepared data)"]) == ("4.14.0.94", "20.0.1")
    assert rows["device"] == "cuda"
    assert rows["image-steps (training images, summed over models)"] == "7,200,000"
    assert rows["wall time"] == "5400 s (1 h 30 min 0 s)"
    assert rows["GPU-hours"] == "3.00 (2 GPU(s) x 1.50 h)"
    assert "| git commit | `0123456789abcdef0123456789abcdef01234567` |" in provenance_markdown(plan)


def test_cpu_run_and_what_an_older_run_did_not_record(make_run):
    assert gpu_hours({"device": "cpu", "wall_seconds": 100.0}).startswith("0 (CPU run")
    assert "did not record how many GPUs" in gpu_hours({"device": "cuda", "wall_seconds": 100.0})
    settings = dict(PAPER_SETTINGS, versions={"torch": "2.14.1", "ray": None})
    plan = _plan(make_run, settings, None)
    rows = dict(provenance_rows(plan))
    assert rows["git commit"] == "not recorded" and rows["Ray"] == "not installed"
    assert rows["partfer"].startswith("not recorded (this report was built with")
    assert rows["OpenCV (prepared data)"].startswith("not recorded (")
    assert "manifest.json records no versions" in rows["OpenCV (prepared data)"]
    no_checkout = dict(settings, versions=dict(VERSIONS, git_commit=None, git_dirty=None))
    rows = dict(provenance_rows(replace(plan, settings=no_checkout)))
    assert rows["git commit"] == "unknown (not run from a git checkout)"
