"""The throughput benchmark runs end to end on a CPU (tiny sizes) and writes its JSON."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_runs_variants_check_and_profile(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "train_throughput.py"), "--device", "cpu", "--image-size", "32",
         "--pack", "2", "--steps", "2", "--warmup", "1", "--variants", "naive,packed,packed-nchw",
         "--check", "--profile", "--json", str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [r["variant"] for r in result["results"]] == ["naive", "packed", "packed-nchw"]
    assert all(r["images_per_s"] > 0 for r in result["results"])
    assert result["results"][1]["models"] == 2 and result["results"][1]["ratio_to_naive"] > 0
    assert result["check"]["logits"] < 1e-4 and result["check"]["grad"] < 1e-4
    assert "aten::" in result["profile"]
    assert "x naive" in proc.stdout


def test_bench_rejects_unknown_variant():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "train_throughput.py"), "--device", "cpu",
                           "--variants", "naive,warp-speed"], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "unknown variant 'warp-speed'" in proc.stderr


@pytest.mark.slow
@pytest.mark.triton
def test_host_ops_of_the_fused_path_stay_near_pytorchs():
    # per-step host work (aten ops dispatched, Triton launches) bounds the rate of small packs;
    # the fused kernels' bookkeeping runs as one kernel per layer and pass, not as ~30 tiny ops
    sys.path.insert(0, str(REPO))
    from bench.train_throughput import count_host_ops

    counts = count_host_ops("cpu", image_size=32, n_models=2, batch=2)
    plain, fused = counts["pytorch_kernels"], counts["fused_kernels"]
    assert plain["triton_launches"] == 0 and fused["triton_launches"] >= 4 * 8     # 8 BN layers
    assert 0 < fused["aten_ops"] <= 1.2 * plain["aten_ops"], counts
    assert "native_batch_norm" in plain["by_op"] and "native_batch_norm" not in fused["by_op"]
