"""The fused BN -> ReLU [-> max-pool] Triton kernels (run by Triton's interpreter on a CPU) against
torch's batch_norm, relu and max-pool (models.pooling.MaxPool: max_pool2d, or Keras "same"), in
float64 (the kernels compute in float32)."""
import pytest
import torch
import torch.nn.functional as F

from partfer.models.kernels import fused_bn
from partfer.models.pooling import MaxPool

pytestmark = pytest.mark.triton         # skipped only where Triton cannot run at all

POOLS = [None, (3, 2, 0), (3, 2, 1), (2, 2, 0), (3, 1, 1), (3, 2, "same")]


def reference(y, weight, bias, eps, pool):
    z = F.batch_norm(y, None, None, weight, bias, True, 0.0, eps)
    if pool is not None:
        z = MaxPool(*pool)(z)
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


@pytest.mark.parametrize("pool", [(3, 2, 0), (2, 2, 0), (3, 2, "same")])
def test_ties_go_to_the_first_maximum_like_pytorch(pool):
    # integer activations: most windows hold several equal maxima; the gradient must reach the
    # same (first) one as max_pool2d's, and ReLU's zero outputs must pass no gradient
    y, weight, bias = _inputs((2, 16, 9, 9), seed=1, integer=True)
    with torch.no_grad():
        weight.abs_()       # same ordering as y: the ties survive normalisation exactly
    _compare(y, weight, bias, pool, tol=2e-5)


@pytest.mark.parametrize("pool,h,w", [((3, 2, "same"), 6, 6), ((3, 2, "same"), 10, 5), ((3, 2, "same"), 5, 8),
                                      ((2, 2, "same"), 7, 6), ((4, 1, "same"), 6, 5), ((5, 3, "same"), 8, 7)])
def test_same_pooling_at_even_and_odd_sizes(pool, h, w):
    # Keras "same": the extra padding pixel goes after (bottom/right), so the last window of an
    # even side hangs past the edge, and a non-square map pads its two axes differently
    _compare(*_inputs((2, 16, h, w), seed=h * 10 + w), pool, tol=2e-5)


@pytest.mark.slow
def test_many_programs_and_loop_iterations(monkeypatch):
    # small tiles: the statistics and gradient sums are split over several programs, each looping
    monkeypatch.setitem(fused_bn.TILES, "rows", 16)
    monkeypatch.setitem(fused_bn.TILES, "channels", 16)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 6)
    monkeypatch.setitem(fused_bn.TILES, "rows_per_program", 48)
    for pool in (None, (3, 2, 0), (3, 2, "same")):
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
    with pytest.raises(ValueError, match="bad pooling"):
        fused_bn.bn_relu(y, weight, bias, 1e-3, (3, 2, "valid"))
    y, weight, bias = _inputs((2, 4, 2, 8), seed=4)
    with pytest.raises(ValueError, match="too small"):
        fused_bn.bn_relu(y, weight, bias, 1e-3, (3, 2, 0))


def test_self_test_passes_where_the_kernels_run():
    # what available() relies on before a pack picks the fused kernels
    assert fused_bn.self_test("cpu") is None
    assert fused_bn.available(torch.zeros(1))


def _halves(y, groups):
    """y's channels as the two parts a split widening conv gives: part j holds channel
    g * 2c + j * c + i as its channel g * c + i."""
    b, ch, h, w = y.shape
    c = ch // (2 * groups)
    v = y.detach().view(b, groups, 2, c, h, w)
    return [v[:, :, j].reshape(b, groups * c, h, w).contiguous(memory_format=torch.channels_last).requires_grad_()
            for j in (0, 1)], c


@pytest.mark.slow
@pytest.mark.parametrize("pool", [None, (3, 2, 0), (3, 2, "same")])
@pytest.mark.parametrize("groups,c", [(3, 8), (2, 16), (5, 4)])
def test_reads_the_two_parts_of_a_split_conv_in_place(pool, groups, c, monkeypatch):
    # tiles of 16 channels: with c = 8 a tile spans two groups, with c = 16 one group's two parts,
    # with c = 4 (40 channels) several groups and a masked tail
    monkeypatch.setitem(fused_bn.TILES, "rows", 16)
    monkeypatch.setitem(fused_bn.TILES, "channels", 16)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 6)
    monkeypatch.setitem(fused_bn.TILES, "rows_per_program", 48)
    y, weight, bias = _inputs((2, 2 * groups * c, 11, 10), seed=groups * c)
    parts, cp = _halves(y, groups)
    out, mean, var = fused_bn.bn_relu(parts, weight, bias, 1e-3, pool, group_channels=cp)
    want = reference(y, weight, bias, 1e-3, pool)
    torch.testing.assert_close(out, want, atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(mean.double(), y.detach().mean((0, 2, 3)), atol=2e-5, rtol=2e-5)
    torch.testing.assert_close(var.double(), y.detach().var((0, 2, 3), unbiased=False), atol=2e-5, rtol=2e-5)
    g = torch.randn_like(want)
    got = torch.autograd.grad(out, (*parts, weight, bias), g)
    exp_y, exp_w, exp_b = torch.autograd.grad(want, (y, weight, bias), g)
    exp_parts, _ = _halves(exp_y, groups)
    for a, e in zip(got, (*exp_parts, exp_w, exp_b)):
        torch.testing.assert_close(a, e.detach(), atol=2e-4, rtol=2e-4)


def test_parts_must_fit_together():
    y, weight, bias = _inputs((2, 16, 6, 6), seed=5)
    parts, cp = _halves(y, 2)
    with pytest.raises(ValueError, match="group_channels"):
        fused_bn.bn_relu(parts, weight, bias, 1e-3, group_channels=3)
    with pytest.raises(ValueError, match="parts of y differ"):
        fused_bn.bn_relu([parts[0], parts[1][:, :2]], weight, bias, 1e-3, group_channels=cp)
    with pytest.raises(ValueError, match="2 parts"):
        fused_bn.bn_relu([parts[0]] * 3, weight, bias, 1e-3, group_channels=cp)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_running_statistics_are_updated_in_place(dtype):
    # channels 0..15 of y are buffer rows index[c] (a pack computing some of its models); the
    # running mean must include the shift (a conv bias left out of y), the variance is unbiased
    y, weight, bias = _inputs((3, 16, 7, 6), seed=6)
    gen = torch.Generator().manual_seed(6)
    rmean, rvar = torch.randn(40, generator=gen, dtype=dtype), torch.rand(40, generator=gen, dtype=dtype) + 0.5
    index = torch.cat([torch.arange(8, 16), torch.arange(24, 32)])
    shift = torch.randn(16, generator=gen, dtype=torch.float64)
    before = rmean.clone(), rvar.clone()
    running = fused_bn.Running(rmean, rvar, 0.1, index, shift)
    fused_bn.bn_relu(y, weight, bias, 1e-3, running=running)
    v = y.detach()
    want_mean = before[0].clone()
    want_var = before[1].clone()
    want_mean[index] = before[0][index] * 0.9 + (v.mean((0, 2, 3)) + shift).to(dtype) * 0.1
    want_var[index] = before[1][index] * 0.9 + v.var((0, 2, 3), unbiased=True).to(dtype) * 0.1
    torch.testing.assert_close(rmean, want_mean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rvar, want_var, atol=1e-6, rtol=1e-6)
    untouched = torch.ones(40, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(rmean[untouched], before[0][untouched]) and torch.equal(rvar[untouched], before[1][untouched])
    # without an index or shift: channel c is row c, the batch mean as it is
    rmean2, rvar2 = torch.zeros(16, dtype=dtype), torch.ones(16, dtype=dtype)
    fused_bn.bn_relu(y, weight, bias, 1e-3, running=fused_bn.Running(rmean2, rvar2, 0.5))
    torch.testing.assert_close(rmean2, (v.mean((0, 2, 3)) * 0.5).to(dtype), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(rvar2, (0.5 + v.var((0, 2, 3)) * 0.5).to(dtype), atol=1e-6, rtol=1e-6)
