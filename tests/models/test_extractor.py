"""The extractor's execution shortcuts against the textbook layer sequence built from torch modules.

Training mode skips the conv bias (BN cancels it; the running mean still gets it) and runs the
last ReLU of blocks 1-3 after the max-pool; on CUDA, widening grouped convs are split into square
ones and the grey input may be zero-padded, and BN -> ReLU [-> max-pool] may run as fused Triton
kernels (here in Triton's interpreter, computing in float32). None may change outputs, gradients or
BN statistics.
"""
import pytest
import torch
from torch import nn

from partfer.models.kernels import fused_bn
from partfer.models.extractor import FeatureExtractor, _pad_grey, split_conv
from partfer.models.options import ExecOptions

# float32 kernels against float64 layers
FUSED_TOL = dict(atol=1e-5, rtol=1e-5)


def assert_close_to_scale(got: torch.Tensor, want: torch.Tensor, rel: float) -> None:
    """|got - want| within rel of want's largest magnitude (float32 sums over many pixels lose
    digits on small entries, not on the tensor's scale)."""
    err, scale = (got - want).abs().max().item(), want.abs().max().item()
    assert err <= rel * max(scale, 1e-12), f"max error {err:.3g} vs scale {scale:.3g}"

WIDTHS = (4, 8, 16, 32)        # each block doubles its channels, as the paper's (16, 32, 64, 128)
SIZE = 40


def textbook(ext: FeatureExtractor) -> nn.Sequential:
    """The same layers as plain modules sharing ext's parameters and copies of its BN buffers."""
    layers: list[nn.Module] = []
    for block in ext.blocks:
        for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
            ref_bn = nn.BatchNorm2d(bn.num_features, eps=bn.eps, momentum=bn.momentum).double()
            ref_bn.load_state_dict(bn.state_dict())
            ref_bn.weight, ref_bn.bias = bn.weight, bn.bias
            layers += [conv, ref_bn, nn.ReLU()]
        layers.append(block.pool)
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


@pytest.fixture
def big_tiles(monkeypatch):
    """Large tiles: few programs, so Triton's interpreter runs them fast (the kernels' own tests
    cover small tiles, loops and masks)."""
    monkeypatch.setitem(fused_bn.TILES, "rows", 512)
    monkeypatch.setitem(fused_bn.TILES, "rows_per_program", 2048)
    monkeypatch.setitem(fused_bn.TILES, "stat_programs", 16)


@pytest.mark.parametrize("momentum,fuse,padding", [(0.1, "off", 0), (None, "off", 0), (0.1, "off", "same"),
                                                   pytest.param(None, "on", 0, marks=[pytest.mark.triton, pytest.mark.slow]),
                                                   pytest.param(0.1, "on", "same", marks=[pytest.mark.triton, pytest.mark.slow])])
def test_training_forward_equals_conv_bias_bn_relu_pool(momentum, fuse, padding, big_tiles):
    # with "same" pooling the maps are 40, 20, 10, 5 -> 3: even and odd sides. Its seed keeps
    # every BN output clear of ReLU's kink, where the float32 kernels may see the other sign than
    # float64 layers and route a gradient differently (seed 0's comes within 2e-6 of it)
    torch.manual_seed(0 if padding == 0 else 24)
    ext = FeatureExtractor(WIDTHS, bn_momentum=0.1, pool_padding=padding,
                           options=ExecOptions(fuse=fuse)).double()
    tol = dict(atol=1e-10, rtol=1e-10) if fuse == "off" else FUSED_TOL
    for m in ext.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.bias, -1.0, 1.0)     # biases that matter if they were mishandled
        if isinstance(m, nn.BatchNorm2d):
            m.momentum = momentum
    ref = textbook(ext)
    ext.train(), ref.train()
    for step in range(3):
        x = torch.randn(5, 3, SIZE, SIZE, dtype=torch.float64, requires_grad=True)
        got, want = ext(x), ref(x)
        torch.testing.assert_close(got, want, **tol)
        g_got = torch.autograd.grad(got.square().sum(), [x] + list(ext.parameters()), allow_unused=True)
        g_want = torch.autograd.grad(want.square().sum(), [x] + list(ext.parameters()))
        for a, b in zip(g_got, g_want):
            if a is None:       # a conv bias: its true gradient is zero
                assert b.abs().max() < 1e-9
            elif fuse == "off":
                torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
            else:
                assert_close_to_scale(a, b, 3e-5)
    ref_bns = [m for m in ref if isinstance(m, nn.BatchNorm2d)]
    ext_bns = [m for m in ext.modules() if isinstance(m, nn.BatchNorm2d)]
    for ours, theirs in zip(ext_bns, ref_bns):
        # the running mean includes the conv bias, as with the bias added to the activation
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, **tol)
        torch.testing.assert_close(ours.running_var, theirs.running_var, **tol)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ext.eval(), ref.eval()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    torch.testing.assert_close(ext(x), ref(x), **tol)


@pytest.mark.parametrize("padding", [0, "same"])
def test_pooled_block_equals_pool_of_block(padding):
    torch.manual_seed(1)
    ext = FeatureExtractor(WIDTHS, pool_padding=padding).double().eval()
    block = ext.blocks[0]
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    torch.testing.assert_close(block(x, pooled=True), block.pool(block(x)), atol=0, rtol=0)


def with_options(ext: FeatureExtractor, options: ExecOptions) -> FeatureExtractor:
    """ext's twin (same weights and BN statistics, dtype and device) built with other options."""
    ref = next(ext.parameters())
    twin = FeatureExtractor.from_arch(ext.arch, ext.n_models, options=options).to(ref.device, ref.dtype)
    twin.load_state_dict(ext.state_dict())
    return twin.train(ext.training)


def _run(ext: FeatureExtractor, x: torch.Tensor, grey: str, split: str, channels_last: bool,
         fuse: str = "off", models: torch.Tensor | None = None, interleave: str = "auto"):
    ext = with_options(ext, ExecOptions(grey=grey, split=split, fuse=fuse, interleave=interleave))
    if channels_last:
        ext = ext.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = ext(x, models=models)
    grads = torch.autograd.grad(out.square().sum(), list(ext.parameters()), allow_unused=True)
    stats = [b.clone() for name, b in ext.named_buffers() if "running" in name]
    return out, grads, stats


def _pack_with_biases(pool_padding: int | str = 0) -> FeatureExtractor:
    """A 3-model float64 extractor in training mode whose conv biases are not zero (a mistake in
    how the bias enters the running mean would show)."""
    ext = FeatureExtractor(WIDTHS, n_models=3, pool_padding=pool_padding).double().train()
    for m in ext.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.uniform_(m.bias, -1.0, 1.0)
    return ext


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("grey,split", [("repeat", "off"), ("pad", "off"), ("fold", "on"), ("pad", "on")])
def test_execution_modes_compute_the_same(grey, split, channels_last):
    # widening grouped convs split into square ones (ExecOptions.split) and the grey first conv fed
    # as folded / repeated / zero-padded channels (ExecOptions.grey): CUDA speed-ups, one function
    torch.manual_seed(2)
    ext = _pack_with_biases()
    x = torch.rand(4, 3, SIZE, SIZE, dtype=torch.float64)          # one grey channel per model
    want = _run(ext, x, "fold", "off", False)
    got = _run(ext, x, grey, split, channels_last)
    torch.testing.assert_close(got[0], want[0], atol=1e-10, rtol=1e-9)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


@pytest.mark.slow
@pytest.mark.triton
@pytest.mark.parametrize("grey,interleave", [("pad", "auto"), ("pad", "copy")])
@pytest.mark.parametrize("subset", [False, True])
def test_fused_kernels_compute_the_same(subset, grey, interleave, big_tiles):
    # the CUDA default (split convs read in place, padded grey, fused BN kernels) and the split
    # convs' outputs interleaved first, with and without a model subset (a compacted pack): same
    # features, gradients and running statistics of every model
    torch.manual_seed(5)
    ext = _pack_with_biases()
    models = torch.tensor([0, 2]) if subset else None
    x = torch.rand(4, 2 if subset else 3, SIZE, SIZE, dtype=torch.float64)
    want = _run(ext, x, "fold", "off", False, models=models)
    got = _run(ext, x, grey, "on", True, fuse="on", models=models, interleave=interleave)
    torch.testing.assert_close(got[0], want[0], **FUSED_TOL)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close_to_scale(a, b, 3e-5)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, **FUSED_TOL)
    if subset:      # the skipped model's statistics were not touched
        fresh = [b for name, b in ext.named_buffers() if "running" in name]
        for a, b in zip(got[2], fresh):
            torch.testing.assert_close(a[a.numel() // 3:2 * a.numel() // 3], b[b.numel() // 3:2 * b.numel() // 3],
                                       atol=0, rtol=0)


@pytest.mark.triton
def test_fused_kernels_with_same_pooling_on_a_non_square_input(big_tiles):
    # Keras "same" pooling in the fused kernels of a pack (split convs read in place, a model
    # subset): 37 x 30 pads its two axes differently (19 x 15, 10 x 8, 5 x 4, 3 x 2)
    torch.manual_seed(7)
    ext = _pack_with_biases("same")
    models = torch.tensor([0, 2])
    x = torch.rand(4, 2, 37, 30, dtype=torch.float64)
    want = _run(ext, x, "fold", "off", False, models=models)
    got = _run(ext, x, "pad", "on", True, fuse="on", models=models)
    torch.testing.assert_close(got[0], want[0], **FUSED_TOL)
    for a, b in zip(got[1], want[1]):
        assert (a is None) == (b is None)
        if a is not None:
            assert_close_to_scale(a, b, 3e-5)
    for a, b in zip(got[2], want[2]):
        torch.testing.assert_close(a, b, **FUSED_TOL)


def test_split_conv_is_the_widening_grouped_conv():
    torch.manual_seed(3)
    groups, c, ratio = 3, 4, 2
    conv = nn.Conv2d(groups * c, groups * c * ratio, 3, padding=1, groups=groups).double()
    x = torch.randn(2, groups * c, 9, 9, dtype=torch.float64)
    for cl in (False, True):
        xi = x.contiguous(memory_format=torch.channels_last) if cl else x
        got = split_conv(xi, conv.weight, conv.bias, conv, groups, ratio)
        torch.testing.assert_close(got, conv(x), atol=1e-12, rtol=1e-10)
        assert got.is_contiguous(memory_format=torch.channels_last) == cl


def test_grey_padding_under_autocast_is_built_in_the_autocast_dtype():
    torch.manual_seed(4)
    ext = FeatureExtractor(WIDTHS, n_models=3).train()
    x = torch.rand(4, 3, SIZE, SIZE)
    outs = {}
    for grey in ("fold", "pad"):
        net = with_options(ext, ExecOptions(grey=grey))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outs[grey] = net(x).float()
    torch.testing.assert_close(outs["pad"], outs["fold"], atol=0.1, rtol=0.05)   # bf16: close
    with torch.autocast("cpu", dtype=torch.bfloat16):
        padded, weight = _pad_grey(x, torch.ones(3 * 4, 1, 3, 3), 4)
    assert padded.dtype == torch.bfloat16 and padded.shape == (4, 12, SIZE, SIZE)
    assert torch.equal(padded[:, 0::4], x.to(torch.bfloat16)) and not padded[:, 1::4].any()
    assert weight.shape == (12, 4, 3, 3) and not weight[:, 1:].any()
