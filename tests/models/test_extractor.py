"""The extractor's execution shortcuts against the textbook layer sequence built from torch modules.

Training mode skips the conv bias (BN cancels it; the running mean still gets it) and runs the
last ReLU of blocks 1-3 after the max-pool. Neither may change outputs, gradients or BN statistics.
"""
import pytest
import torch
from torch import nn

from models.extractor import FeatureExtractor

WIDTHS = (4, 6, 8, 10)
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


@pytest.mark.parametrize("momentum", [0.1, None])
def test_training_forward_equals_conv_bias_bn_relu_pool(momentum):
    torch.manual_seed(0)
    ext = FeatureExtractor(WIDTHS, bn_momentum=0.1).double()
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
        torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)
        g_got = torch.autograd.grad(got.square().sum(), [x] + list(ext.parameters()), allow_unused=True)
        g_want = torch.autograd.grad(want.square().sum(), [x] + list(ext.parameters()))
        for a, b in zip(g_got, g_want):
            if a is None:       # a conv bias: its true gradient is zero
                assert b.abs().max() < 1e-9
            else:
                torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
    ref_bns = [m for m in ref if isinstance(m, nn.BatchNorm2d)]
    ext_bns = [m for m in ext.modules() if isinstance(m, nn.BatchNorm2d)]
    for ours, theirs in zip(ext_bns, ref_bns):
        # the running mean includes the conv bias, as with the bias added to the activation
        torch.testing.assert_close(ours.running_mean, theirs.running_mean, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(ours.running_var, theirs.running_var, atol=1e-12, rtol=1e-10)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == 3
    ext.eval(), ref.eval()
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    torch.testing.assert_close(ext(x), ref(x), atol=1e-10, rtol=1e-10)


def test_pooled_block_equals_pool_of_block():
    torch.manual_seed(1)
    ext = FeatureExtractor(WIDTHS).double().eval()
    block = ext.blocks[0]
    x = torch.randn(2, 3, SIZE, SIZE, dtype=torch.float64)
    torch.testing.assert_close(block(x, pooled=True), block.pool(block(x)), atol=0, rtol=0)
