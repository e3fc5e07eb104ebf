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


@pytest.mark.slow
def test_a_model_stopped_in_place_is_held_from_the_next_step_on():
    # what check_graphs does to a captured step on the GPU, here eagerly: the plan is not rebuilt
    sys.path.insert(0, str(REPO))
    from bench.train_throughput import held_change, make_step, stop_in_place

    torch.manual_seed(0)
    step = make_step(4, "cpu", 32, 2, "fp32", False, fuse_mode="off", augment="torch", stopped=0.5, n_images=16)
    step()
    before = {name: t.clone() for name, t in step.net.model_views().items()}
    held = stop_in_place(step, 2)
    for _ in range(3):
        step()
    assert held_change(step, held, 2) == 0.0
    after = step.net.model_views()
    conv = "extractor.blocks.0.conv1.weight"
    assert not torch.equal(after[conv][3], before[conv][3])            # still training
    assert all(torch.equal(after[name][0], before[name][0]) for name in before)   # held from the start
    assert step.plan.active.tolist() == [False, False, False, True]
    assert step.stepper.counts()["step_plans"] == 1
    with pytest.raises(ValueError, match="no held mask"):
        stop_in_place(make_step(2, "cpu", 32, 2, "fp32", False, fuse_mode="off", augment="torch", n_images=8), 0)


@pytest.mark.slow
@pytest.mark.triton
def test_the_conv_tile_sweep_runs_and_restores_the_tiles():
    # on a GPU it times the Triton convs against cuDNN's; here (the interpreter) it only has to run
    sys.path.insert(0, str(REPO))
    from bench.train_throughput import conv_tile_sweep
    from partfer.models.kernels import fused_bn, grouped_conv

    before = (dict(grouped_conv.CONV_TILES), fused_bn.TILES["warps"])
    rows = conv_tile_sweep(2, 1, 16, reps=1, device="cpu")
    assert [r["convs"] for r in rows] == ["torch"] + ["triton"] * 6 + ["torch"] + ["triton"] * 2
    assert all("error" not in r and r["forward_ms"] > 0 and r["train_ms"] > 0 for r in rows), rows
    assert (dict(grouped_conv.CONV_TILES), fused_bn.TILES["warps"]) == before
