"""The plain sub-network: shapes, Keras-style initialisation, state-dict keys, stages, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from partfer.models.config import ArchitectureError
from partfer.models.extractor import FeatureExtractor, InputTooSmallError, feature_map_sizes, min_input_size
from partfer.models.heads import ClassifierHead, LandmarkHead
from partfer.models.subnet import SubNetwork


@pytest.mark.parametrize("size, maps", [(32, 3), (48, 5), (64, 7), (160, 19)])
def test_output_shapes(size, maps):
    net = SubNetwork(8, 136, seed=0).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        assert net.features(x).shape == (2, 128)
        logits, act = net.classify(x, return_maps=True)
        assert logits.shape == (2, 8)
        assert act.shape == (2, 128, maps, maps)     # last block, before its max-pool
        assert net.landmarks(x).shape == (2, 136)
        assert net(x, output="landmarks").shape == (2, 136)
    assert feature_map_sizes(size, size, net.arch)[3] == (maps, maps)


def test_grad_cam_maps_are_in_the_graph():
    net = SubNetwork(7, None, seed=0).eval()
    logits, maps = net.classify(torch.randn(1, 3, 32, 32), return_maps=True)
    grad = torch.autograd.grad(logits[0, 3], maps)[0]
    assert grad.shape == maps.shape and grad.abs().sum() > 0


def _conv_layers(net: SubNetwork):
    for block in net.extractor.blocks:
        yield block.conv1, block.in_channels
        yield block.conv2, block.out_channels


def test_init_within_he_and_glorot_bounds():
    net = SubNetwork(7, 18, seed=42)
    for conv, cin in _conv_layers(net):
        bound = math.sqrt(6.0 / (cin * 9))
        w = conv.weight
        assert w.abs().max() <= bound
        assert w.abs().max() > 0.9 * bound                 # uniform over the whole range, not smaller
        assert abs(w.mean().item()) < 0.1 * bound
        assert torch.all(conv.bias == 0)
    for head in (net.landmark_head, net.classifier):
        for layer in head.layers():
            bound = math.sqrt(6.0 / (layer.in_features + layer.out_features))
            assert layer.weight.abs().max() <= bound
            assert layer.weight.abs().max() > 0.9 * bound
            assert torch.all(layer.bias == 0)
    for block in net.extractor.blocks:
        for bn in (block.bn1, block.bn2):
            assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
            assert torch.all(bn.running_mean == 0) and torch.all(bn.running_var == 1)


def test_seed_reproducibility():
    a, b, c = SubNetwork(7, 18, seed=1), SubNetwork(7, 18, seed=1), SubNetwork(7, 18, seed=2)
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])
    assert not torch.equal(a.classifier.fc1.weight, c.classifier.fc1.weight)
    torch.manual_seed(5)
    d = SubNetwork(7, None)
    torch.manual_seed(5)
    e = SubNetwork(7, None)
    assert torch.equal(d.extractor.blocks[0].conv1.weight, e.extractor.blocks[0].conv1.weight)
    # A head's draws do not depend on whether the other head exists.
    f = SubNetwork(7, None, seed=1)
    assert torch.equal(f.classifier.fc3.weight, a.classifier.fc3.weight)


def test_state_dict_keys():
    keys = set(SubNetwork(7, 18, seed=0).state_dict())
    assert "extractor.blocks.0.conv1.weight" in keys
    assert "extractor.blocks.3.bn2.running_var" in keys
    assert {k for k in keys if not k.startswith("extractor.")} == {
        "landmark_head.fc1.weight", "landmark_head.fc1.bias", "landmark_head.fc2.weight", "landmark_head.fc2.bias",
        "classifier.fc1.weight", "classifier.fc1.bias", "classifier.fc2.weight", "classifier.fc2.bias",
        "classifier.fc3.weight", "classifier.fc3.bias"}
    assert not any(k.startswith("classifier.") for k in SubNetwork(None, 18, seed=0).state_dict())


def test_head_activation_option():
    x = torch.randn(5, 128)
    linear = ClassifierHead(7, activation="none")
    # Without activation the head is one affine map: f(a) + f(b) - f(0) == f(a + b).
    zero = torch.zeros(1, 128)
    torch.testing.assert_close(linear(x) + linear(x) - linear(zero), linear(2 * x), atol=1e-4, rtol=1e-4)
    relu = LandmarkHead(18, activation="relu")
    relu.reset_(torch.Generator().manual_seed(0))
    with torch.no_grad():
        relu.fc1.bias.fill_(-100.0)     # every hidden unit negative -> ReLU zeroes them
    assert torch.all(relu(x) == relu.fc2.bias)
    with pytest.raises(ArchitectureError, match="head activation must be one of .* got 'tanh'"):
        ClassifierHead(7, activation="tanh")


def test_stage_parameters_and_modes():
    net = SubNetwork(7, 18, seed=0)
    ext = {id(p) for p in net.extractor.parameters()}
    assert {id(p) for p in net.trainable_parameters("landmark")} == ext | {id(p) for p in net.landmark_head.parameters()}
    assert {id(p) for p in net.trainable_parameters("head")} == {id(p) for p in net.classifier.parameters()}
    assert {id(p) for p in net.trainable_parameters("finetune")} == ext | {id(p) for p in net.classifier.parameters()}
    net.set_stage_mode("head")
    assert not net.extractor.training and net.classifier.training
    assert not any(p.requires_grad for p in net.extractor.parameters())
    net.set_stage_mode("landmark")
    assert net.extractor.training and not any(p.requires_grad for p in net.classifier.parameters())
    with pytest.raises(ValueError, match="unknown stage"):
        net.set_stage_mode("pretrain")
    with pytest.raises(ValueError, match="landmark_head"):
        SubNetwork(7, None, seed=0).trainable_parameters("landmark")


def test_bad_inputs_and_settings():
    net = SubNetwork(7, None, seed=0)
    smallest = min_input_size(net.arch)
    assert smallest == 31                           # 31 -> 15 -> 7 -> 3 -> 1
    net.eval()(torch.zeros(1, 3, smallest, smallest))
    with pytest.raises(InputTooSmallError, match="minimum is 31x31"):
        net(torch.zeros(1, 3, 24, 24))
    with pytest.raises(ValueError, match="expects"):
        net(torch.zeros(1, 2, 32, 32))
    with pytest.raises(ArchitectureError, match="no landmark_head"):
        net.landmarks(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ArchitectureError, match="bn_momentum .* got None"):
        FeatureExtractor(bn_momentum=None)
    with pytest.raises(ArchitectureError, match="n_classes must be >= 1 or None, got 0"):
        SubNetwork(0, None)
    with pytest.raises(ArchitectureError, match="head_activation .* got 'gelu'"):
        SubNetwork(7, None, head_activation="gelu")
