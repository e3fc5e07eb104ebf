"""Grad-CAM (paper Eqs. 5-6): shapes, range, agreement with a hook-based reference, packed ==
plain, and on a trained network the map points at the evidence it learned."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from partfer.models.gradcam import gradcam, union
from partfer.models.packed import PackedNetwork
from partfer.models.subnet import SubNetwork

SMALL = dict(widths=(4, 8, 8, 16), head_hidden=16)


pytestmark = pytest.mark.usefixtures("one_thread")


def _reference(net: SubNetwork, x: torch.Tensor, cls: list[int]) -> torch.Tensor:
    """Grad-CAM the textbook way: a forward hook on the last conv block keeps its activation
    and its gradient; normalised per map by min-max, as the function under test promises."""
    kept = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        kept["a"] = out

    handle = net.extractor.blocks[-1].register_forward_hook(hook)
    try:
        logits = net.classify(x.clone().requires_grad_(True))
        logits[torch.arange(len(cls)), torch.tensor(cls)].sum().backward()
    finally:
        handle.remove()
    a, g = kept["a"], kept["a"].grad
    cam = torch.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].detach()
    lo = cam.amin((1, 2), keepdim=True)
    hi = cam.amax((1, 2), keepdim=True)
    return torch.where(hi > lo, (cam - lo) / (hi - lo), torch.zeros_like(cam))


def test_plain_maps_match_a_hook_based_reference():
    net = SubNetwork(7, None, seed=3).eval()
    x = torch.randn(3, 3, 48, 48)
    maps = gradcam(net, x, [0, 4, 6])
    assert maps.shape == (3, 48, 48)
    torch.testing.assert_close(maps, _reference(net, x, [0, 4, 6]), atol=1e-5, rtol=1e-4)
    assert maps.min() >= 0 and maps.max() <= 1
    assert torch.all(maps.flatten(1).amax(1) == 1)                  # each map reaches 1 ...
    assert torch.all(maps.flatten(1).amin(1) == 0)                  # ... and 0


def test_grayscale_input_and_int_class_and_predicted_class():
    net = SubNetwork(5, None, seed=1).eval()
    x = torch.randn(2, 1, 40, 40)
    assert gradcam(net, x, 2).shape == (2, 40, 40)
    with torch.no_grad():
        pred = net.classify(x).argmax(1)
    torch.testing.assert_close(gradcam(net, x, None), gradcam(net, x, pred))
    torch.testing.assert_close(gradcam(net, x, 2), gradcam(net, x, [2, 2]))


def test_packed_maps_equal_each_plain_networks_maps():
    nets = [SubNetwork(7, None, seed=s).eval() for s in (10, 11, 12)]
    packed = PackedNetwork.from_subnetworks(nets).eval()
    x = torch.randn(2, 3, 1, 40, 40)                                  # each member its own image
    cls = torch.tensor([[0, 3, 6], [5, 5, 1]])
    maps = gradcam(packed, x, cls)
    assert maps.shape == (2, 3, 40, 40)
    for m, net in enumerate(nets):
        torch.testing.assert_close(maps[:, m], gradcam(net, x[:, m], cls[:, m]), atol=1e-5, rtol=1e-4)
    same = gradcam(packed, x, torch.tensor([4, 2]))                  # (B,): one class for every member
    torch.testing.assert_close(same[:, 1], gradcam(nets[1], x[:, 1], [4, 2]), atol=1e-5, rtol=1e-4)


def test_modes_parameters_and_statistics_are_left_alone():
    net = SubNetwork(7, None, seed=0)
    net.train()
    net.extractor.requires_grad_(False)                               # frozen, as after a head stage
    before = {k: v.clone() for k, v in net.state_dict().items()}
    maps = gradcam(net, torch.randn(4, 3, 32, 32), 1)
    assert maps.shape == (4, 32, 32)
    assert net.training and all(m.training for m in net.modules())
    assert all(p.grad is None for p in net.parameters())
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k                           # BN running stats untouched


def test_a_map_without_signal_is_zero_not_nan():
    net = SubNetwork(3, None, seed=0).eval()
    with torch.no_grad():
        net.classifier.fc3.weight.zero_()                             # no class score depends on the maps
    maps = gradcam(net, torch.randn(2, 3, 32, 32), 0)
    assert torch.equal(maps, torch.zeros_like(maps))


def test_bad_class_indices_are_refused():
    net = SubNetwork(3, None, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match="out of range"):
        gradcam(net, x, 3)
    with pytest.raises(ValueError, match="does not fit"):
        gradcam(net, x, [0, 1, 2])
    with pytest.raises(TypeError, match="needs a SubNetwork or PackedNetwork, got Linear"):
        gradcam(torch.nn.Linear(2, 2), x, 0)


def test_union_is_the_elementwise_maximum():
    a = torch.tensor([[[0.0, 1.0], [0.5, 0.2]]])
    b = torch.tensor([[[0.3, 0.1], [0.9, 0.2]]])
    expected = torch.tensor([[[0.3, 1.0], [0.9, 0.2]]])
    assert torch.equal(union([a, b]), expected)
    assert torch.equal(union(torch.stack([a, b], 1)), expected)
    with pytest.raises(ValueError, match="at least one map"):
        union([])


def _bar_batch(n: int, gen: torch.Generator, size: int = 48):
    """Noise with one bright bar at a random place: class 0 vertical, class 1 horizontal.

    Both classes have the same mean brightness, so the network must find the bar to classify.
    Returns images, labels and a mask of each bar (grown by 2 pixels).
    """
    x = torch.randn(n, 1, size, size, generator=gen) * 0.3
    y = torch.randint(0, 2, (n,), generator=gen)
    bars = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        h, w = (4, 16) if y[i] else (16, 4)
        top = int(torch.randint(0, size - h, (1,), generator=gen))
        left = int(torch.randint(0, size - w, (1,), generator=gen))
        x[i, 0, top:top + h, left:left + w] += 2.0
        bars[i, max(0, top - 2):top + h + 2, max(0, left - 2):left + w + 2] = True
    return x, y, bars


def test_on_a_trained_network_the_map_points_at_the_evidence():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    net = SubNetwork(2, None, seed=0, bn_momentum=0.2, **SMALL)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        x, y, _ = _bar_batch(32, gen)
        opt.zero_grad()
        F.cross_entropy(net.classify(x), y).backward()
        opt.step()
    net.eval()
    x, y, bars = _bar_batch(64, gen)
    with torch.no_grad():
        assert (net.classify(x).argmax(1) == y).float().mean() > 0.95
    maps = gradcam(net, x, y)
    assert maps.shape == (64, 48, 48) and maps.min() >= 0
    assert torch.all(maps.flatten(1).std(1) > 0)                       # not constant
    # the map is brighter on the bar (the class evidence) than elsewhere
    ratio = torch.stack([m[b].mean() / m[~b].mean() for m, b in zip(maps, bars)])
    assert (ratio > 1).float().mean() >= 0.85 and ratio.median() > 1.4, ratio
