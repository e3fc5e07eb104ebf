"""Each custom kernel a pack switches on checks itself against PyTorch's route on its device; one
that fails to compile, to run or to agree leaves the pack on PyTorch's route, with one warning
line and the fallback named in the pack's result and its models' meta.json."""
import dataclasses
import functools
import json

import pandas as pd
import pytest
import torch

from partfer.data_prep.prepared import load_prepared
from partfer.models.kernels import fused_bn, warp
from partfer.models.options import ExecOptions
from partfer.orchestrator.config import load_config
from partfer.orchestrator.execution.plan import build_plan
from partfer.orchestrator.training import kernel_routes
from partfer.orchestrator.training.batches import check_fused_route
from partfer.orchestrator.training.jobs import ExecSettings
from partfer.orchestrator.training.kernel_routes import pack_routes
from partfer.orchestrator.training.train import run_pack

ON = ExecSettings(channels_last=False, deterministic=False, cudnn_benchmark=False, compile="off",
                  fused_augment="on", network=ExecOptions(fuse="on"))


@pytest.fixture
def first_checks():
    """Every check runs anew, as the first pack of a process would run it."""
    def forget():
        fused_bn._self_test.cache_clear()
        kernel_routes._REPORTED.clear()
    forget()
    yield
    forget()


def _off_by_a_little(*args, **kwargs):
    out, mean, var = fused_bn.bn_relu(*args, **kwargs)
    return out * 1.01, mean, var


def _no_kernel_image(*args, **kwargs):
    raise RuntimeError("no kernel image is available for execution on the device")


def test_auto_checks_nothing_on_a_cpu(first_checks):
    # the shipped profiles switch the kernels on as "auto": CUDA only, so a CPU run never checks them
    def never(device):
        raise AssertionError("a kernel check ran on a CPU pack")
    auto = dataclasses.replace(ON, fused_augment="auto", network=ExecOptions(fuse="auto"))
    lines = []
    routes = pack_routes(auto, torch.device("cpu"), lines.append, {"fused_bn": never, "fused_augment": never})
    assert routes == kernel_routes.PackRoutes(ExecOptions(fuse="auto"), False, {}) and lines == []


@pytest.mark.triton
@pytest.mark.parametrize("kernel,says", [(_off_by_a_little, "ArithmeticError: results differ"),
                                         (_no_kernel_image, "RuntimeError: no kernel image")])
def test_a_kernel_that_disagrees_or_fails_falls_back_with_one_warning(first_checks, kernel, says):
    checks = {"fused_bn": lambda device: fused_bn.self_test(
                  device, functools.partial(fused_bn.compare_with_pytorch, kernel=kernel)),
              "fused_augment": kernel_routes.CHECKS["fused_augment"]}
    lines = []
    for _ in range(2):          # a second pack of the process: the same routes, no second warning
        routes = pack_routes(ON, torch.device("cpu"), lines.append, checks)
        assert routes.network == ExecOptions(fuse="off") and routes.fused_augment
        assert list(routes.fallbacks) == ["fused_bn"] and routes.fallbacks["fused_bn"].startswith(says)
    assert len(lines) == 1 and "train.fused_bn" in lines[0] and says in lines[0], lines


@pytest.mark.triton
def test_the_real_kernels_pass_their_checks(first_checks):
    lines = []
    assert pack_routes(ON, torch.device("cpu"), lines.append) == kernel_routes.PackRoutes(ON.network, True, {})
    assert lines == []


@pytest.mark.slow
@pytest.mark.triton
def test_a_pack_whose_kernels_fail_to_compile_trains_on_pytorchs_route(tiny_prepared, tmp_path, monkeypatch,
                                                                        first_checks):
    # tiles the compiler rejects (not a power of two): both kernels fail their checks here as they
    # would on a GPU Triton cannot compile for; the pack then trains exactly as with both off
    monkeypatch.setitem(fused_bn.TILES, "rows", 48)
    monkeypatch.setitem(warp.TILES, "pixels", 100)
    over = {"image_size": 32, "networks": ["baseline"], "members": 2, "train.twin_selection": None,
            "datasets.jaffe.epochs": {"baseline": 2, "landmark": 2, "head": 2, "finetune": 2}}
    cfg = load_config("demo", over)
    jobs, lines = {}, []
    for name, execution in (("failing", ON), ("off", dataclasses.replace(ON, fused_augment="off",
                                                                          network=ExecOptions(fuse="off")))):
        job = build_plan(cfg, {"jaffe": load_prepared(tiny_prepared)}, str(tmp_path / name), "cpu", "t",
                         pack_size=2).chains[0][0]
        jobs[name] = dataclasses.replace(job, execution=execution)
    result = run_pack(jobs["failing"], log=lines.append)
    assert result.trained == 2 and set(result.kernel_fallbacks) == {"fused_bn", "fused_augment"}
    assert "power of 2" in result.kernel_fallbacks["fused_bn"]
    assert "power of 2" in result.kernel_fallbacks["fused_augment"]
    warnings = [line for line in lines if line.startswith("WARNING")]
    assert len(warnings) == 2 and any("train.fused_bn" in w for w in warnings), warnings
    assert run_pack(jobs["off"]).kernel_fallbacks == {}
    for failing, off in zip(jobs["failing"].models, jobs["off"].models):
        meta = json.loads(open(f"{failing.out_dir}/meta.json").read())
        assert meta["kernel_fallbacks"] == result.kernel_fallbacks
        assert "kernel_fallbacks" not in json.loads(open(f"{off.out_dir}/meta.json").read())
        a = torch.load(f"{failing.out_dir}/checkpoint.pt", weights_only=True)
        b = torch.load(f"{off.out_dir}/checkpoint.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        pd.testing.assert_frame_equal(pd.read_csv(f"{failing.out_dir}/history.csv"),
                                      pd.read_csv(f"{off.out_dir}/history.csv"))
