"""The square grouped convolutions as Triton kernels (models.kernels.grouped_conv), here in Triton's
interpreter: the same function as F.conv2d, forward and both gradients, and the same network
when the extractor uses them (ExecOptions.conv "triton")."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from partfer.models.kernels import fused_bn, grouped_conv
from partfer.models.extractor import FeatureExtractor
from partfer.models.options import ExecOptions
from partfer.models.kernels.grouped_conv import grouped_conv as tconv



def _both(x: torch.Tensor, w: torch.Tensor, groups: int):
    """Output and gradients of the kernels (float32) and of F.conv2d in float64."""
    xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
    xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
    k = w.shape[-1]
    out = tconv(xs, ws, groups)
    ref = F.conv2d(xr, wr, None, 1, k // 2, 1, groups)
    g = torch.randn(out.shape, dtype=torch.float64)
    out.backward(g.float())
    ref.backward(g)
    return (out, xs.grad, ws.grad), (ref, xr.grad, wr.grad)


def _assert_close(got, want, rel=1e-5):
    for name, a, b in zip(("output", "input gradient", "weight gradient"), got, want):
        err, scale = float((a.double() - b).detach().abs().max()), float(b.detach().abs().max())
        assert err <= rel * scale, f"{name}: max error {err:.3g} vs scale {scale:.3g}"


@pytest.mark.triton
@pytest.mark.parametrize("batch,groups,c,h,w,k", [(2, 2, 16, 6, 5, 3), (1, 3, 32, 4, 7, 3), (2, 1, 16, 3, 9, 1),
                                                  (1, 2, 16, 7, 6, 5), (1, 1, 64, 2, 3, 3)])
def test_grouped_conv_is_conv2d(batch, groups, c, h, w, k):
    torch.manual_seed(0)
    x = torch.randn(batch, groups * c, h, w).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(groups * c, c, k, k)
    got, want = _both(x, wt, groups)
    _assert_close(got, want)
    assert got[0].is_contiguous(memory_format=torch.channels_last)


@pytest.mark.triton
def test_the_weight_gradient_adds_many_runs_of_pixels(monkeypatch):
    # small tiles: several tiles per program's run, several runs summed, a ragged last tile
    monkeypatch.setitem(grouped_conv.CONV_TILES, "tile", 256)
    monkeypatch.setitem(grouped_conv.CONV_TILES, "wgrad_programs", 40)
    torch.manual_seed(1)
    x = torch.randn(3, 32, 7, 5)                     # NCHW in: taken as channels-last
    wt = torch.randn(32, 16, 3, 3)
    got, want = _both(x, wt, 2)
    _assert_close(got, want)


@pytest.mark.triton
def test_under_bf16_autocast_it_computes_in_bf16_like_conv2d():
    torch.manual_seed(2)
    x = torch.randn(2, 32, 6, 6).contiguous(memory_format=torch.channels_last)
    wt = torch.randn(32, 16, 3, 3, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = tconv(x, wt, 2)
        ref = F.conv2d(x, wt.detach(), None, 1, 1, 1, 2)
    assert out.dtype == ref.dtype == torch.bfloat16
    assert float((out.float() - ref.float()).detach().abs().max()) <= 1e-2 * float(ref.float().abs().max())
    out.float().sum().backward()
    assert wt.grad.dtype == torch.float32 and torch.isfinite(wt.grad).all()


@pytest.mark.triton
def test_supported_takes_square_same_convs_only():
    def conv(cin, cout, k=3, groups=2, **kw):
        return nn.Conv2d(groups * cin, groups * cout, k, padding=kw.pop("padding", k // 2), groups=groups, **kw)
    x = torch.zeros(1, 32, 8, 8)
    ok = conv(16, 16)
    assert grouped_conv.supported(x, ok.weight, 2, ok)
    for bad, groups, x_bad in ((conv(8, 8), 2, torch.zeros(1, 16, 8, 8)),          # groups too narrow
                               (conv(16, 32), 2, x),                               # widening
                               (conv(16, 16, stride=2), 2, x),
                               (conv(16, 16, padding=0), 2, x),
                               (conv(16, 16, dilation=2, padding=2), 2, x),
                               (conv(16, 16, k=2, padding=1), 2, x),
                               (conv(128, 128, groups=1), 1, torch.zeros(1, 128, 8, 8)),       # too wide
                               (ok, 2, x.double())):
        assert not grouped_conv.supported(x_bad, bad.weight, groups, bad)


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.parametrize("fuse", ["off", "on"])
def test_an_extractor_with_triton_convs_computes_the_same(fuse, monkeypatch, autograd_nodes):
    # the paper's widths' pattern at a small size: block 1's 16 -> 16 and the padded grey conv,
    # a widening conv split into square halves (read in place by the fused BN kernels with
    # fuse on), a narrowing conv left to PyTorch; features, gradients, running statistics
    monkeypatch.setitem(fused_bn.TILES, "rows", 512)         # few programs: the interpreter is slow
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 16)
    monkeypatch.setitem(grouped_conv.CONV_TILES, "tile", 8192)
    monkeypatch.setitem(grouped_conv.CONV_TILES, "wgrad_programs", 1)
    torch.manual_seed(3)
    ext = FeatureExtractor((16, 32, 16, 16), n_models=2).train()
    for m in ext.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.bias, -1.0, 1.0)
    x = torch.rand(2, 2, 31, 31).contiguous(memory_format=torch.channels_last)     # one grey channel per model

    def run(conv: str):
        options = ExecOptions(grey="pad", split="on", fuse=fuse, conv=conv)
        net = FeatureExtractor.from_arch(ext.arch, ext.n_models, options=options)
        net.load_state_dict(ext.state_dict())       # ext's weights and statistics, untouched by the runs
        net = net.train().to(memory_format=torch.channels_last)
        out = net(x)
        grads = torch.autograd.grad(out.square().sum(), list(net.parameters()), allow_unused=True)
        return out, grads, [b.clone() for name, b in net.named_buffers() if "running" in name]

    want, got = run("torch"), run("triton")
    # 16 -> 16 convs: block 1's two (the grey one padded), the widening one's two halves, and
    # one in block 2 and two in blocks 3 and 4 each, but not block 3's narrowing 32 -> 16 one
    assert autograd_nodes(got[0], "GroupedConv") == 8 and autograd_nodes(want[0], "GroupedConv") == 0
    torch.testing.assert_close(got[0], want[0], atol=1e-5, rtol=1e-4)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            assert float((a - b).abs().max()) <= 1e-4 * max(float(b.abs().max()), 1e-6)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
