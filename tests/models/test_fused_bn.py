"""The fused BN -> ReLU [-> max-pool] Triton kernels (run by Triton's interpreter on a CPU) against
torch's batch_norm, relu and max_pool2d, in float64 (the kernels compute in float32)."""
import pytest
import torch
import torch.nn.functional as F

from models import fused_bn

pytestmark = pytest.mark.skipif(fused_bn.triton is None or not fused_bn.available(torch.zeros(1)),
                                reason="needs Triton (its interpreter on a CPU: TRITON_INTERPRET=1)")

POOLS = [None, (3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1)]


def reference(y, weight, bias, eps, pool):
    z = F.batch_norm(y, None, None, weight, bias, True, 0.0, eps)
    if pool is not None:
        z = F.max_pool2d(z, *pool)
    return F.relu(z)


def _inputs(shape, seed, integer=False):
    g = torch.Generator().manual_seed(seed)
    b, c, h, w = shape
    if integer:     # few distinct values: windows full of ties
        y = torch.randint(-2, 3, shape, generator=g).double()
    else:
        y = torch.randn(shape, generator=g, dtype=torch.float64) * 2 + 3    # an offset mean
    y = y.contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_()   # some negative
    bias = torch.randn(c, generator=g, dtype=torch.float64).requires_grad_()
    return y, weight, bias


def _compare(y, weight, bias, pool, tol):
    out, mean, var = fused_bn.bn_relu(y, weight, bias, 1e-3, pool)
    want = reference(y, weight, bias, 1e-3, pool)
    assert out.shape == want.shape and out.dtype == y.dtype
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, want, atol=tol, rtol=tol)
    torch.testing.assert_close(mean.double(), y.detach().mean((0, 2, 3)), atol=tol, rtol=tol)
    torch.testing.assert_close(var.double(), y.detach().var((0, 2, 3), unbiased=False), atol=tol, rtol=tol)
    assert not mean.requires_grad and not var.requires_grad
    g = torch.randn_like(want)
    got = torch.autograd.grad(out, (y, weight, bias), g)
    exp = torch.autograd.grad(want, (y, weight, bias), g)
    for a, b in zip(got, exp):
        torch.testing.assert_close(a, b, atol=tol * 10, rtol=tol * 10)


@pytest.mark.parametrize("pool", POOLS)
def test_matches_batch_norm_relu_max_pool(pool):
    # 40 channels: no power-of-two tile divides them, so masked channel lanes are exercised too
    _compare(*_inputs((3, 40, 13, 11), seed=0), pool, tol=2e-5)


@pytest.mark.parametrize("pool", [(3, 2, 0), (2, 2, 0)])
def test_ties_go_to_the_first_maximum_like_pytorch(pool):
    # integer activations: most windows hold several equal maxima; the gradient must reach the
    # same (first) one as max_pool2d's, and ReLU's zero outputs must pass no gradient
    y, weight, bias = _inputs((2, 16, 9, 9), seed=1, integer=True)
    with torch.no_grad():
        weight.abs_()       # same ordering as y: the ties survive normalisation exactly
    _compare(y, weight, bias, pool, tol=2e-5)


def test_many_programs_and_loop_iterations(monkeypatch):
    # small tiles: the statistics and gradient sums are split over several programs, each looping
    monkeypatch.setitem(fused_bn.TILES, "rows", 16)
    monkeypatch.setitem(fused_bn.TILES, "channels", 16)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 6)
    monkeypatch.setitem(fused_bn.TILES, "rows_per_program", 48)
    for pool in (None, (3, 2, 0)):
        _compare(*_inputs((2, 32, 15, 14), seed=2), pool, tol=2e-5)


def test_bfloat16_activations():
    y, weight, bias = _inputs((2, 32, 12, 12), seed=3)
    yb = y.detach().to(torch.bfloat16).contiguous(memory_format=torch.channels_last).requires_grad_()
    w32, b32 = weight.detach().float().requires_grad_(), bias.detach().float().requires_grad_()
    out, _, _ = fused_bn.bn_relu(yb, w32, b32, 1e-3, (3, 2, 0))
    assert out.dtype == torch.bfloat16
    want = reference(yb.detach().float(), w32.detach(), b32.detach(), 1e-3, (3, 2, 0))
    torch.testing.assert_close(out.float(), want, atol=0.03, rtol=0.01)   # bf16 rounding of the output
    out.float().sum().backward()
    assert yb.grad.dtype == torch.bfloat16 and torch.isfinite(yb.grad.float()).all()


def test_bad_input_is_named():
    y, weight, bias = _inputs((1, 4, 1, 1), seed=4)
    with pytest.raises(ValueError, match="more than one value per channel"):
        fused_bn.bn_relu(y, weight, bias, 1e-3)
    y, weight, bias = _inputs((1, 4, 8, 8), seed=4)
    with pytest.raises(ValueError, match="bad pooling"):
        fused_bn.bn_relu(y, weight, bias, 1e-3, (3, 2, 2))


def test_self_test_passes_where_the_kernels_run():
    # what available() relies on before a pack picks the fused kernels
    assert fused_bn.self_test("cpu") is None
    assert fused_bn.available(torch.zeros(1))
