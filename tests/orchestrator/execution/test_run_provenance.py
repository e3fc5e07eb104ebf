"""What the runner records for a run's report: the code's commit, the GPUs used, and the
complexity of the networks at the size the run trains at."""
import json
import subprocess
from types import SimpleNamespace

from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.runner import PACKAGE_DIR, git_state, gpus_used, write_complexity


def test_git_state_of_this_checkout_and_of_a_plain_folder(tmp_path):
    state = git_state()
    head = subprocess.run(["git", "-C", str(PACKAGE_DIR), "rev-parse", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode == 0:                    # tests run from a checkout (not an installed copy)
        assert state["git_commit"] == head.stdout.strip()
        assert isinstance(state["git_dirty"], bool)
    assert git_state(tmp_path) == {"git_commit": None, "git_dirty": None}
    # a folder inside a repository is not that repository's root: its commit is not ours
    assert git_state(PACKAGE_DIR / "results") == {"git_commit": None, "git_dirty": None}


def test_gpus_used_for_gpu_hours():
    assert gpus_used("cpu", True, SimpleNamespace(gpus=4)) == 0
    assert gpus_used("cuda", True, SimpleNamespace(gpus=4.0)) == 4
    assert gpus_used("cuda:0", False, None) == 1


def test_complexity_is_counted_at_the_runs_image_size(tmp_path):
    cfg = load_config("demo", {"image_size": 32})
    write_complexity(cfg, tmp_path, (7,))
    small = json.loads((tmp_path / "analysis" / "complexity.json").read_text())
    cfg = load_config("demo", {"image_size": 64})
    write_complexity(cfg, tmp_path, (7,))
    large = json.loads((tmp_path / "analysis" / "complexity.json").read_text())
    assert (small["image_size"], large["image_size"]) == (32, 64)
    assert small["extractor_params"] == large["extractor_params"]       # size-free
    assert large["by_n_classes"]["7"]["subnetwork_gflops"] > small["by_n_classes"]["7"]["subnetwork_gflops"]
