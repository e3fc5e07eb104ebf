"""When a run may not be set beside the paper, and why."""
from partfer.orchestrator.records import DatasetInfo, ModelRecord, RunPlan
from partfer.results.comparability import partial_note, shrink_reasons, synthetic_note, warning_line


def _plan(settings, folds=10, members=5):
    info = DatasetInfo("ckplus", ["anger", "contempt"], "kfold", list(range(folds)), "/p", 10)
    models = [ModelRecord("ckplus", "el", f"p{i}", 0, "finetune", f"k{i}", f"m/k{i}")
              for i in range(members)]
    return RunPlan("r", "/s", settings, {"ckplus": info}, models)


def test_faithful_run_has_no_reasons():
    plan = _plan({"image_size": 160, "epochs_scale": 1.0, "shrunk": False, "synthetic": False})
    assert shrink_reasons(plan) == [] and warning_line(plan) is None
    assert synthetic_note(plan) is None


def test_each_departure_is_named():
    plan = _plan({"image_size": 48, "epochs_scale": 0.5, "shrunk": {"max_samples": 100},
                  "synthetic": ["ckplus"]}, folds=3, members=2)
    assert shrink_reasons(plan) == [
        "run marked shrunk (max_samples=100)", "epochs scaled by 0.5 (paper: full epochs)",
        "image size 48 (paper: 160)", "trained and tested on synthetic faces (ckplus)",
        "CK+: 3 folds (paper: 10)", "CK+ el: 2 members (paper: 5)"]
    assert warning_line(plan).startswith("**WARNING: these numbers are NOT comparable")


def test_recorded_reasons_are_shown_as_written_plus_structural_checks():
    # The orchestrator's own list replaces the per-setting guesses (no duplicate image-size line).
    recorded = ["image size 32 instead of 160", "ckplus epochs below the paper's (ours/paper): "
                "baseline 4/400", "synthetic data (ckplus)"]
    plan = _plan({"image_size": 32, "epochs_scale": 0.01, "shrunk": True,
                  "shrunk_reasons": recorded, "synthetic": ["ckplus"]}, folds=3)
    assert shrink_reasons(plan) == recorded + ["CK+: 3 folds (paper: 10)"]
    faithful = _plan({"image_size": 160, "shrunk": False, "shrunk_reasons": [], "synthetic": []})
    assert shrink_reasons(faithful) == [] and synthetic_note(faithful) is None


def test_partial_note_for_a_run_still_running():
    assert partial_note(_plan({"status": "finished"})) is None
    assert partial_note(_plan({})) is None
    assert "'running', not finished" in partial_note(_plan({"status": "running"}))
