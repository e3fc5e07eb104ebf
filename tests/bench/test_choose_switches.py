"""The GPU run's opt-in switches follow what the bench measured and checked (bench/choose_switches.py)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.choose_switches import choose  # noqa: E402


def _bench(**rates) -> dict:
    """A bench output with these rates, and checks that all passed."""
    return {"results": [{"variant": v.replace("_", "-"), "images_per_s": r} for v, r in rates.items()],
            "check_training": {"pad": {"params": 1e-6}, "fused": {"params": 2e-6}, "tconv": {"params": 2e-6}},
            "check_graphs": {"eager_vs_eager": {"params_rel": 0.0}, "graph_vs_eager": {"params_rel": 0.0},
                             "graph_replays": 5, "held_moved": 0.0}}


def test_a_switch_needs_3_percent_and_its_check():
    out = _bench(packed=100.0, packed_fusegrey=102.0, packed_tconv=110.0, small=10.0, small_graph=12.0)
    assert choose(out, {}) == ["train.triton_conv=true", "train.cuda_graphs=true"]
    out["check_training"]["tconv"]["params"] = 1e-2            # trains differently: not taken
    out["check_graphs"]["held_moved"] = 1e-3                    # a stopped model moved under the graph
    assert choose(out, {}) == []


def test_the_environment_overrides_and_missing_figures_leave_switches_off():
    out = _bench(packed=100.0, packed_tconv=110.0)
    assert choose(out, {"TCONV": "off", "GREY": "on"}) == ["train.fused_grey_conv=true"]
    assert choose(None, {}) == [] and choose({"results": []}, {}) == []
    assert choose(None, {"GRAPHS": "on"}) == ["train.cuda_graphs=true"]
    with pytest.raises(SystemExit, match="TCONV must be auto, on or off"):
        choose(out, {"TCONV": "yes"})


def test_the_script_prints_the_runs_set_arguments(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(_bench(packed=100.0, packed_tconv=104.0)))
    run = subprocess.run([sys.executable, str(REPO / "bench" / "choose_switches.py"), str(path)],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == "--set train.triton_conv=true"
    run = subprocess.run([sys.executable, str(REPO / "bench" / "choose_switches.py"), str(tmp_path / "none.json")],
                         capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert run.returncode == 0 and run.stdout.strip() == ""
