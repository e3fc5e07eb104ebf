"""The job records and the planner read without torch: the dry run and the layout planner run
where nothing trains."""
import subprocess
import sys

import pytest

from partfer.orchestrator.training.jobs import ModelJob, SharedOutput, monitor_selection, monitored_rows


@pytest.mark.parametrize("module", ["partfer.orchestrator.execution.pack_planner",
                                    "partfer.orchestrator.execution.plan_summary",
                                    "partfer.orchestrator.training.jobs"])
def test_importing_imports_no_torch(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_a_training_serves_at_most_one_watched_selection():
    assert monitor_selection(("evaluated_fold", "last"), None) == "evaluated_fold"
    assert monitor_selection(("last",), 5) == "last"
    with pytest.raises(ValueError, match="with a patience"):
        monitor_selection(("evaluated_fold", "last"), 5)
    with pytest.raises(ValueError, match="cannot serve"):
        monitor_selection(("evaluated_fold", "heldout_subjects"), None)


def test_monitored_rows_follow_the_selection():
    job = ModelJob(key="k", out_dir="/x", seed=1, region=None, fold=0, train=(1, 2), val=(), test=(3,),
                   upstream_dir=None, shared=(SharedOutput("last", "k2", "/y"),))
    assert job.keys == ("k", "k2") and job.out_dirs == ("/x", "/y")
    assert monitored_rows("evaluated_fold", job) == (3,) and monitored_rows("last", job) == (1, 2)
    with pytest.raises(ValueError, match="no held-out subject"):
        monitored_rows("heldout_subjects", job)


def test_pack_names_say_which_models_a_pack_trains(tiny_prepared, tmp_path):
    # Progress lines of up to three packs interleave: each must say which pack it is.
    from partfer.data_prep.prepared import load_prepared
    from partfer.orchestrator.config import load_config
    from partfer.orchestrator.execution.plan import build_plan
    from partfer.orchestrator.training.jobs import pack_name

    cfg = load_config("demo", {"image_size": 32, "networks": ["ftl", "el"], "parts": ["mouth", "eyes"]})
    plan = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path), "cpu", "t", pack_size=4)
    jobs = [job for chain in plan.chains for job in chain]
    names = [pack_name(job) for job in jobs]
    assert len(set(names)) == len(names)
    assert [n.split(" (")[0] for n in names] == [f"pack {i}/{len(jobs)}" for i in range(1, len(jobs) + 1)]
    first = jobs[0]
    folds = sorted({m.fold for m in first.models})
    assert f"{len(first.models)} models)" in names[0] and f"folds {folds[0]}" in names[0]
    networks = {m.meta["network"] for job in jobs for m in job.models}
    assert networks == {"ftl", "el"} and any("el mouth" in n or "el eyes" in n for n in names)
    assert "ftl m0" in " ".join(names)               # FTL's members by name, EL's by part
