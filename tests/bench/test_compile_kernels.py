"""Every Triton kernel a training step launches compiles for a GPU that is not here
(bench/compile_kernels.py): launches are recorded instead of run, then compiled by Triton's own
compiler and ptxas for sm_90, and the cubins read by cuobjdump."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from bench.compile_kernels import ARCHS, Compiled, failed, occupancy, verdict  # noqa: E402
from partfer.models.kernels import fused_bn  # noqa: E402


def _compiling_env(cache: Path) -> dict:
    # compiled, not interpreted (the interpreter replaces the kernels' helper functions), into a
    # cache of the test's own so that every kernel is compiled anew
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(cache)
    return env


@pytest.mark.triton
def test_recording_keeps_launches_as_cuda_would_get_them_and_runs_none():
    y = torch.randn(2, 32, 9, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight, bias = torch.ones(32, requires_grad=True), torch.zeros(32, requires_grad=True)
    kernels_before, tests_before = fused_bn._kernel.cache_info(), fused_bn._self_test.cache_info()
    with fused_bn.recording() as launches:
        assert fused_bn.runs_on(y) and fused_bn.compiled(y) and fused_bn.self_test("cpu") is None
        with pytest.raises(RuntimeError, match="already being recorded"):
            with fused_bn.recording():
                pass
        out = fused_bn.bn_relu(y, weight, bias, 1e-3, pool=(3, 2, 0))[0]
        out.float().sum().backward()
    names = [(launch.fn.__name__, launch.meta.get("APPLY")) for launch in launches]
    assert names == [("_stats", None), ("_finalize_forward", None), ("_apply_pool_relu", None),
                     ("_backward", False), ("_finalize_backward", None), ("_backward", True)]
    assert all(launch.meta["num_warps"] == fused_bn.TILES["warps"] for launch in launches)
    # no kernel was fetched (so none ran) and no self-test result was remembered
    assert fused_bn._kernel.cache_info() == kernels_before
    assert fused_bn._self_test.cache_info() == tests_before
    assert fused_bn._RECORDING is None and not fused_bn.compiled(y)


def test_occupancy_follows_the_calculators_rules():
    # 158 registers x 32 threads -> 5,120 per warp: 12 warps' worth of the SM's 65,536, 3 blocks of 4
    assert occupancy(158, 4, 4096, 90) == (12 / 64, "registers")
    assert occupancy(32, 4, 0, 90) == (1.0, "warps")
    # 40 KiB (+1 KiB reserved) per block: 2 blocks in sm_86's 100 KiB
    assert occupancy(32, 4, 40 * 1024, 86) == (8 / 48, "shared memory")


def test_shared_memory_over_a_gpus_limit_fails_and_spills_are_flagged():
    entry = Compiled(kernel="k", arch=86, routes=["baseline"], constants={}, signature="", num_warps=4,
                     regs=255, local_bytes=16, shared_bytes=ARCHS[86]["smem_block"] + 1)
    problems = verdict(entry)
    assert failed(entry) and len(problems) == 2 and "spills" in problems[1]
    entry.shared_bytes = ARCHS[86]["smem_block"]
    assert not failed(entry)


@pytest.mark.slow
@pytest.mark.triton
def test_a_kernel_the_compiler_rejects_is_reported_by_name(tmp_path):
    # a matrix product of 8-wide tiles: below the tensor cores' 16, which the compiler refuses
    (tmp_path / "bad_kernel.py").write_text(textwrap.dedent('''
        import triton.language as tl

        def narrow_dot(X, Y, B: tl.constexpr):
            i = tl.arange(0, B)
            a = tl.load(X + i[:, None] * B + i[None, :])
            tl.store(Y + i[:, None] * B + i[None, :], tl.dot(a, a))
    '''))
    script = textwrap.dedent(f'''
        import sys, torch
        sys.path[:0] = [{str(tmp_path)!r}, {str(REPO)!r}]
        from bad_kernel import narrow_dot
        from bench.compile_kernels import compile_launches, failed
        from partfer.models.kernels.fused_bn import Launch
        x = torch.zeros(64, dtype=torch.bfloat16)
        done = {{}}
        compile_launches([Launch(narrow_dot, (1,), (x, x.float()), {{"B": 8, "num_warps": 4}})], [90], "test",
                         done, echo=lambda *a: None)
        (entry,) = done.values()
        print(entry.kernel, failed(entry), entry.error)
    ''')
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=_compiling_env(tmp_path / "triton"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("bad_kernel.narrow_dot True "), proc.stdout
    assert "K >= 16" in proc.stdout
    if fused_bn._env_interpret():
        # which Triton's interpreter, all the CPU tests have, runs without a complaint
        sys.path.insert(0, str(tmp_path))
        try:
            from bad_kernel import narrow_dot
        finally:
            sys.path.remove(str(tmp_path))
        x = torch.ones(64, dtype=torch.bfloat16)
        fused_bn.triton.jit(narrow_dot)[(1,)](x, torch.zeros(64), B=8)


@pytest.mark.slow
@pytest.mark.triton
def test_every_kernel_of_every_route_compiles_for_sm90(tmp_path):
    out = tmp_path / "kernels.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "compile_kernels.py"), "--pack", "3", "--batch", "2",
         "--image-size", "32", "--arch", "90", "--json", str(out)],
        capture_output=True, text=True, timeout=900, env=_compiling_env(tmp_path / "triton"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    kernels = json.loads(out.read_text())["kernels"]
    names = {k["kernel"].rsplit(".", 1)[-1] for k in kernels}
    assert names == {"_stats", "_apply_relu", "_apply_pool_relu", "_backward", "_finalize_forward",
                     "_finalize_backward", "_warp"}
    assert {r for k in kernels for r in k["routes"]} == {"baseline", "splitcopy"}
    for k in kernels:
        assert k["error"] is None and k["regs"] > 0, k
        assert k["shared_bytes"] <= ARCHS[90]["smem_block"] and 0 < k["occupancy"] <= 1, k
    # the compacted pack's indexed running-statistics update was compiled too
    assert any(k["constants"].get("HAS_IDX") for k in kernels if k["kernel"].endswith("_finalize_forward"))
    # the BN kernels read channels-last rows in 16-byte loads; a mask that varies along the
    # channels (the pooled backward's window hits, before session 9) splits them into 2-byte ones
    for k in kernels:
        if ".fused_bn." in k["kernel"]:
            assert k["narrow_loads"] == 0 and k["wide_loads"] > 0, k
    assert "| sm_90 | fused_bn._backward |" in proc.stdout


def test_tile_settings_are_applied_typed_and_checked(monkeypatch):
    from bench.compile_kernels import set_tiles
    monkeypatch.setitem(fused_bn.TILES, "rows", fused_bn.TILES["rows"])
    monkeypatch.setitem(fused_bn.TILES, "divide", fused_bn.TILES["divide"])
    assert set_tiles(["bn.rows=128", "bn.divide=false"]) == {"bn.rows": 128, "bn.divide": False}
    assert fused_bn.TILES["rows"] == 128 and fused_bn.TILES["divide"] is False
    for bad, says in (("bn.tiles=1", "expected TABLE.KEY=VALUE"), ("gpu.rows=1", "expected TABLE.KEY=VALUE"),
                      ("bn.rows=big", "'big' is not a valid int"), ("bn.divide=maybe", "not a valid bool"),
                      ("bn.rows", "expected TABLE.KEY=VALUE")):
        with pytest.raises(SystemExit, match=says):
            set_tiles([bad])
