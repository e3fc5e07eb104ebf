"""The packed network must be M plain sub-networks, exactly: outputs, losses, gradients, BN stats."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from partfer.models.config import ArchitectureError
from partfer.models.losses import packed_cross_entropy, packed_l1_loss
from partfer.models.packed import PackedNetwork, StateDictError, model_view
from partfer.models.subnet import SubNetwork
SIZE = 32                        # tiny inputs keep every test to seconds
BATCH = 4
PART_OUTPUTS = [18, 40, 136]     # nose, mouth, full face: ragged landmark heads
N_CLASSES = 7
SEEDS = [11, 22, 33]

# float64 shows the packing is exact (bitwise equal here); float32 shows it within float noise.
TOL = {torch.float64: dict(atol=1e-10, rtol=1e-10), torch.float32: dict(atol=1e-5, rtol=1e-4)}


def plain_nets(dtype=torch.float32) -> list[SubNetwork]:
    return [SubNetwork(N_CLASSES, n, seed=s).to(dtype) for n, s in zip(PART_OUTPUTS, SEEDS)]


def batch(m: int, channels: int, dtype, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, m, channels, SIZE, SIZE, generator=g).to(dtype)
    labels = torch.randint(0, N_CLASSES, (BATCH, m), generator=g)
    coords = torch.rand(BATCH, m, max(PART_OUTPUTS), generator=g).to(dtype)
    return x, labels, coords


def plain_input(x: torch.Tensor, i: int, channels: int) -> torch.Tensor:
    """Model i's batch as the plain network sees it: grayscale repeated 3 times, as in the paper."""
    xi = x[:, i]
    return xi.repeat(1, 3, 1, 1) if channels == 1 else xi


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("train", [True, False])
def test_packed_equals_separate_networks(dtype, channels, train, grads_as_plain):
    nets = plain_nets(dtype)
    packed = PackedNetwork.from_subnetworks(nets)
    if not train:
        # Give the BN running statistics something to hold, identically on both sides.
        warm, _, _ = batch(3, 3, dtype, seed=5)
        with torch.no_grad():
            packed.train()(warm, output="features")
            for i, net in enumerate(nets):
                net.train()(warm[:, i], output="features")
    packed.train(train)
    for net in nets:
        net.train(train)
    x, labels, coords = batch(3, channels, dtype)
    tol = TOL[dtype]

    feats = packed.features(x)
    logits = packed.classify(x)
    marks = packed.landmarks(x)
    mask = packed.landmark_mask
    ce = packed_cross_entropy(logits, labels)
    l1 = packed_l1_loss(marks, coords, mask)
    (ce.sum() + l1.sum()).backward()

    for i, net in enumerate(nets):
        xi = plain_input(x, i, channels)
        torch.testing.assert_close(feats[:, i], net.features(xi), **tol)
        logits_i = net.classify(xi)
        marks_i = net.landmarks(xi)
        torch.testing.assert_close(logits[:, i], logits_i, **tol)
        n = PART_OUTPUTS[i]
        torch.testing.assert_close(marks[:, i, :n], marks_i, **tol)
        ce_i = F.cross_entropy(logits_i, labels[:, i])
        l1_i = F.l1_loss(marks_i, coords[:, i, :n])
        torch.testing.assert_close(ce[i], ce_i, **tol)
        torch.testing.assert_close(l1[i], l1_i, **tol)
        (ce_i + l1_i).backward()

    for i, net in enumerate(nets):
        got = grads_as_plain(packed, i)
        # no gradient (None) counts as zero: in training mode a conv bias in front of BN cancels
        # and gets none, in the pack as in the plain network
        want = {k: p.grad if p.grad is not None else torch.zeros_like(p) for k, p in net.named_parameters()}
        assert set(got) == set(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], **tol, msg=lambda m, k=k: f"model {i} grad {k}: {m}")
        if train:   # per-model BN statistics moved exactly as the plain BNs did
            state = packed.model_state(i)
            for k, v in net.state_dict().items():
                if "running" in k:
                    torch.testing.assert_close(state[k], v, **tol)


def test_plain_grayscale_path_equals_repeated_channels():
    net = SubNetwork(N_CLASSES, 18, seed=3).double().eval()
    x = torch.randn(2, 1, SIZE, SIZE, dtype=torch.float64)
    torch.testing.assert_close(net.classify(x), net.classify(x.repeat(1, 3, 1, 1)), atol=1e-10, rtol=1e-10)


def test_init_matches_plain_init_per_seed():
    packed = PackedNetwork(3, N_CLASSES, PART_OUTPUTS, seeds=SEEDS)
    for i, net in enumerate(plain_nets()):
        state = packed.model_state(i)
        ref = net.state_dict()
        assert set(state) == set(ref)
        for k in ref:
            assert torch.equal(state[k], ref[k]), k
    # Parts draw from separate streams: the extractor does not depend on which heads exist.
    other = PackedNetwork(3, None, PART_OUTPUTS, seeds=SEEDS)
    for k, v in other.extractor.state_dict().items():
        assert torch.equal(v, packed.extractor.state_dict()[k])
    # Different seeds give different models.
    assert not torch.equal(packed.model_state(0)["extractor.blocks.0.conv1.weight"],
                           packed.model_state(1)["extractor.blocks.0.conv1.weight"])


def test_init_from_generator_is_reproducible():
    a = PackedNetwork(2, N_CLASSES, None, seeds=torch.Generator().manual_seed(7))
    b = PackedNetwork(2, N_CLASSES, None, seeds=torch.Generator().manual_seed(7))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k])


def test_model_state_loads_strict_and_reproduces_outputs():
    packed = PackedNetwork(3, N_CLASSES, PART_OUTPUTS, seeds=SEEDS).double()
    x, _, _ = batch(3, 3, torch.float64)
    packed.train()(x)   # move the BN statistics away from their initial values
    packed.eval()
    logits, marks = packed.classify(x), packed.landmarks(x)
    for i, n in enumerate(PART_OUTPUTS):
        net = SubNetwork(N_CLASSES, n, seed=999).double()
        net.load_state_dict(packed.model_state(i), strict=True)
        net.eval()
        torch.testing.assert_close(net.classify(x[:, i]), logits[:, i], atol=1e-10, rtol=1e-10)
        torch.testing.assert_close(net.landmarks(x[:, i]), marks[:, i, :n], atol=1e-10, rtol=1e-10)
        sub = packed.subnetwork(i).eval()
        torch.testing.assert_close(sub.classify(x[:, i]), logits[:, i], atol=1e-10, rtol=1e-10)


def test_load_model_state_partial_heads():
    stage1 = SubNetwork(None, 40, seed=5)                       # extractor + landmark head
    target = PackedNetwork(2, N_CLASSES, None, seeds=[1, 2])     # classification pack
    before = target.model_state(0)
    with pytest.raises(StateDictError, match="landmark_head"):
        target.load_model_state(0, stage1.state_dict(), strict_heads=True)
    report = target.load_model_state(0, stage1.state_dict(), strict_heads=False)
    assert report == {"loaded": [], "missing": ["classifier"], "ignored": ["landmark_head"]}
    after = target.model_state(0)
    for k, v in stage1.state_dict().items():
        if k.startswith("extractor.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(after[k], v), k
    for k in before:
        if k.startswith("classifier."):
            assert torch.equal(after[k], before[k]), k   # head kept
    # Slot 1 untouched.
    assert not torch.equal(target.model_state(1)["extractor.blocks.0.conv1.weight"],
                           after["extractor.blocks.0.conv1.weight"])


def test_load_model_state_rejects_bad_inputs():
    packed = PackedNetwork(2, N_CLASSES, [18, 40], seeds=[1, 2])
    good = SubNetwork(N_CLASSES, 18, seed=1).state_dict()
    with pytest.raises(StateDictError, match="shape"):
        packed.load_model_state(1, good)      # slot 1 has 40 landmark outputs, not 18
    with pytest.raises(StateDictError, match="extractor keys missing"):
        packed.load_model_state(0, {k: v for k, v in good.items() if "blocks.3" not in k})
    with pytest.raises(StateDictError, match="belong to no part"):
        packed.load_model_state(0, {**good, "optimizer.lr": torch.tensor(1.0)})
    with pytest.raises(IndexError, match="model index 2 out of range for 2 models"):
        packed.load_model_state(2, good)
    wide = SubNetwork(N_CLASSES, 18, seed=1, widths=(8, 16, 32, 128)).state_dict()
    with pytest.raises(StateDictError, match="shape"):
        packed.load_model_state(0, wide)


def test_every_tensor_is_model_major_and_views_share_storage():
    packed = PackedNetwork(3, N_CLASSES, PART_OUTPUTS, seeds=SEEDS)
    views = packed.model_views()
    state = packed.state_dict()
    assert set(views) == {k for k in state if not k.endswith("num_batches_tracked")}
    heads = {k for k in views if not k.startswith("extractor.")}
    for i, n in enumerate(PART_OUTPUTS):
        plain = packed.model_state(i)
        for name, view in views.items():
            assert view.shape[0] == 3
            got = view[i]
            if name in heads:   # (1, in, out) packed layer slice vs nn.Linear (out, in)
                got = got[0]
                got = got[:, : plain[name].shape[0]].T if got.dim() == 2 else got[: plain[name].shape[0]]
            assert torch.equal(got, plain[name]), (name, i)
    # Writing into a view writes into the network.
    views["extractor.blocks.2.bn1.running_var"][1].fill_(7.0)
    assert torch.all(packed.model_state(1)["extractor.blocks.2.bn1.running_var"] == 7.0)
    assert not torch.any(packed.model_state(0)["extractor.blocks.2.bn1.running_var"] == 7.0)


def test_channels_last_views_and_outputs():
    packed = PackedNetwork(3, N_CLASSES, PART_OUTPUTS, seeds=SEEDS).eval()
    x, _, _ = batch(3, 3, torch.float32)
    ref = packed.classify(x)
    packed = packed.to(memory_format=torch.channels_last)
    w = packed.extractor.blocks[1].conv1.weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    torch.testing.assert_close(packed.classify(x), ref, atol=1e-5, rtol=1e-4)
    view = packed.model_views()["extractor.blocks.1.conv1.weight"]
    view[2].zero_()
    assert torch.all(w[64:96] == 0) and torch.any(w[:64] != 0)
    assert packed.model_state(2)["extractor.blocks.1.conv1.weight"].is_contiguous()


def test_autocast_cpu_forward_backward():
    packed = PackedNetwork(2, N_CLASSES, [18, 40], seeds=[1, 2]).to(memory_format=torch.channels_last)
    x = torch.randn(BATCH, 2, 1, SIZE, SIZE)
    labels = torch.randint(0, N_CLASSES, (BATCH, 2))
    ref = packed.eval().classify(x)
    packed.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = packed.classify(x)
        loss = packed_cross_entropy(logits, labels).sum()
    loss.backward()
    assert logits.shape == (BATCH, 2, N_CLASSES)
    used = [p for name, p in packed.extractor.named_parameters() if not name.endswith("conv1.bias")
            and not name.endswith("conv2.bias")] + list(packed.classifier.parameters())
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in used)
    # conv biases in front of training-mode BN cancel: no gradient, no full-size add
    assert all(p.grad is None for name, p in packed.extractor.named_parameters() if name.endswith("bias")
               and ".conv" in name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = packed.eval().classify(x)
    torch.testing.assert_close(low.float(), ref, atol=0.5, rtol=0.1)   # bf16: close, not exact


def test_stopped_model_is_bit_identical_after_adam_step():
    packed = PackedNetwork(3, N_CLASSES, None, seeds=SEEDS)
    opt = torch.optim.Adam(packed.trainable_parameters("baseline"), lr=1e-2, eps=1e-7)
    packed.set_stage_mode("baseline")

    def step(active: torch.Tensor, seed: int) -> None:
        x, labels, _ = batch(3, 3, torch.float32, seed=seed)
        opt.zero_grad()
        (packed_cross_entropy(packed.classify(x), labels) * active).sum().backward()
        opt.step()

    step(torch.ones(3), seed=1)             # gives Adam momentum for every model
    active = torch.tensor([1.0, 0.0, 1.0])
    before = packed.snapshot()
    step(active, seed=2)
    # Without restoring, Adam's momentum (and BN statistics) still move the stopped model.
    moved = packed.model_views()
    assert not torch.equal(moved["extractor.blocks.0.conv1.weight"][1], before["extractor.blocks.0.conv1.weight"][1])
    packed.restore_models_(before, active == 0)
    after = packed.model_views()
    for name in before:
        assert torch.equal(after[name][1], before[name][1]), name
        if name.endswith("weight") and "bn" not in name:
            assert not torch.equal(after[name][0], before[name][0]), name


def _adam_steps(packed, opt, active, seeds, after_step=None):
    for seed in seeds:
        x, labels, _ = batch(3, 3, torch.float32, seed=seed)
        opt.zero_grad()
        (packed_cross_entropy(packed.classify(x), labels) * active).sum().backward()
        opt.step()
        if after_step is not None:
            after_step()


def test_frozen_slices_hold_stopped_models_through_many_steps():
    # What a training step applies after every optimizer step (orchestrator/training/train.py): built once,
    # then one torch.where per tensor, step after step; more models are held by setting the mask
    # in place, without building anything new (a step captured as a CUDA graph stays valid).
    packed = PackedNetwork(3, N_CLASSES, None, seeds=SEEDS)
    opt = torch.optim.Adam(packed.trainable_parameters("baseline"), lr=1e-2, eps=1e-7)
    packed.set_stage_mode("baseline")
    _adam_steps(packed, opt, torch.ones(3), [1])        # momentum for every model
    best = packed.snapshot()
    mask = torch.tensor([False, False, True])
    frozen = packed.frozen_slices(best, mask)
    first = {name: v.clone() for name, v in packed.model_views().items()}
    active = (~mask).float()
    _adam_steps(packed, opt, active, [2, 3], frozen.apply_)
    middle = {name: v.clone() for name, v in packed.model_views().items()}
    conv = "extractor.blocks.0.conv1.weight"
    assert all(torch.equal(middle[name][2], first[name][2]) for name in first)
    assert not torch.equal(middle[conv][1], first[conv][1])      # still training, Adam moves it
    packed.capture_models_(best, [1])                            # model 1 stops at its current weights
    mask[1] = True
    active[1] = 0.0
    _adam_steps(packed, opt, active, [4, 5], frozen.apply_)
    after = packed.model_views()
    for name in first:
        assert torch.equal(after[name][2], first[name][2]), name
        assert torch.equal(after[name][1], middle[name][1]), name
    assert not torch.equal(after[conv][0], middle[conv][0])


def test_frozen_slices_refuse_a_mask_they_cannot_hold_by_reference():
    packed = PackedNetwork(3, N_CLASSES, None, seeds=SEEDS)
    best = packed.snapshot()
    for bad in (torch.tensor([0, 1, 1]), torch.zeros(2, dtype=torch.bool), [False, True, True]):
        with pytest.raises(ValueError, match="frozen-model mask must be a"):
            packed.frozen_slices(best, bad)
    best["extractor.blocks.0.conv1.weight"] = best["extractor.blocks.0.conv1.weight"][:2]
    with pytest.raises(ValueError, match="do not match"):
        packed.frozen_slices(best, torch.zeros(3, dtype=torch.bool))


def test_a_model_subset_index_must_be_on_the_inputs_device():
    packed = PackedNetwork(3, N_CLASSES, None, seeds=SEEDS)
    x, _, _ = batch(3, 3, torch.float32)
    with pytest.raises(ValueError, match="models= must be an index on the input's device"):
        packed.features(x[:, :2].to("meta"), models=packed.model_index([0, 1]))


def test_capture_models_keeps_best_weights():
    packed = PackedNetwork(2, N_CLASSES, None, seeds=[1, 2])
    best = packed.snapshot()
    with torch.no_grad():
        for p in packed.parameters():
            p.add_(1.0)
    packed.capture_models_(best, [1])
    views = packed.model_views()
    for name, v in views.items():
        assert torch.equal(best[name][1], v[1])
        if "running" not in name:
            assert not torch.equal(best[name][0], v[0])


def test_single_model_pack_equals_subnetwork():
    net = SubNetwork(N_CLASSES, 136, seed=4).double().train()
    packed = PackedNetwork.from_subnetworks([net]).train()
    assert packed.n_models == 1
    x, _, _ = batch(1, 3, torch.float64)
    torch.testing.assert_close(packed.classify(x)[:, 0], net.classify(x[:, 0]), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(packed.landmarks(x)[:, 0], net.landmarks(x[:, 0]), atol=1e-10, rtol=1e-10)
    assert packed.landmark_mask.all()


def test_landmark_padding_mask_and_zero_gradient():
    packed = PackedNetwork(3, None, PART_OUTPUTS, seeds=SEEDS)
    mask = packed.landmark_mask
    assert mask.shape == (3, 136) and mask.dtype == torch.bool
    assert mask.sum(dim=1).tolist() == PART_OUTPUTS
    assert mask[0, :18].all() and not mask[0, 18:].any()
    x, _, _ = batch(3, 3, torch.float32)
    marks = packed.landmarks(x)
    assert torch.all(marks[:, 0, 18:] == 0) and torch.all(marks[:, 1, 40:] == 0)
    # Even a loss that (wrongly) looks at the padding cannot train the padded weights.
    (marks - 1.0).abs().sum().backward()
    fc2 = packed.landmark_head.fc2
    assert torch.all(fc2.weight.grad[0, :, 18:] == 0) and torch.all(fc2.bias.grad[1, 40:] == 0)
    assert fc2.weight.grad[0, :, :18].abs().sum() > 0
    assert torch.all(fc2.weight[0, :, 18:] == 0)


def test_head_stage_freezes_extractor_and_bn_statistics():
    packed = PackedNetwork(2, N_CLASSES, None, seeds=[1, 2])
    packed.set_stage_mode("head")
    assert not packed.extractor.training and packed.classifier.training
    params = packed.trainable_parameters("head")
    assert {id(p) for p in params} == {id(p) for p in packed.classifier.parameters()}
    ext_before = {k: v.clone() for k, v in packed.extractor.state_dict().items()}
    head_before = {k: v.clone() for k, v in packed.classifier.state_dict().items()}
    opt = torch.optim.Adam(params, lr=1e-2)
    x, labels, _ = batch(2, 3, torch.float32)
    packed_cross_entropy(packed.classify(x), labels).sum().backward()
    opt.step()
    assert all(p.grad is None for p in packed.extractor.parameters())   # no backward through it
    for k, v in packed.extractor.state_dict().items():
        assert torch.equal(v, ext_before[k]), k
    assert any(not torch.equal(v, head_before[k]) for k, v in packed.classifier.state_dict().items())
    # Fine-tuning switches everything back on.
    packed.set_stage_mode("finetune")
    assert packed.extractor.training and all(p.requires_grad for p in packed.extractor.parameters())
    with pytest.raises(ValueError, match="landmark_head"):
        packed.set_stage_mode("landmark")


def test_finetune_with_frozen_bn_trains_but_keeps_bn_statistics():
    """The authors' transfer stages call the extractor with training=False: BN normalises with
    the statistics it came with, never updates them, while every weight (BN's scale and shift
    included) trains."""
    packed = PackedNetwork(2, N_CLASSES, None, seeds=[1, 2])
    x, labels, _ = batch(2, 3, torch.float32)
    packed.train()
    packed.classify(x)                          # statistics of their own, as a landmark stage leaves them
    stats = {k: v.clone() for k, v in packed.extractor.state_dict().items() if "running" in k}
    packed.set_stage_mode("finetune", frozen_bn=True)
    bns = [m for m in packed.extractor.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and not any(bn.training for bn in bns) and packed.classifier.training
    train_out = packed.classify(x)
    packed.eval()
    with torch.no_grad():
        eval_out = packed.classify(x)
    torch.testing.assert_close(train_out, eval_out, rtol=0, atol=0)
    packed.set_stage_mode("finetune", frozen_bn=True)
    params = packed.trainable_parameters("finetune")
    weights = {k: v.clone() for k, v in packed.extractor.state_dict().items() if "running" not in k}
    opt = torch.optim.Adam(params, lr=1e-2)
    packed_cross_entropy(packed.classify(x), labels).sum().backward()
    opt.step()
    for k, v in packed.extractor.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k
    moved = [k for k, v in packed.extractor.state_dict().items() if "running" not in k
             and "num_batches" not in k and not torch.equal(v, weights[k])]
    assert any(k.endswith("conv1.weight") for k in moved) and any(k.endswith("bn1.weight") for k in moved)
    with pytest.raises(ValueError, match="frozen BN statistics apply"):
        packed.set_stage_mode("baseline", frozen_bn=True)


def test_return_maps_shapes():
    packed = PackedNetwork(2, N_CLASSES, [18, 40], seeds=[1, 2])
    x, _, _ = batch(2, 3, torch.float32)
    logits, maps = packed.classify(x, return_maps=True)
    assert logits.shape == (BATCH, 2, N_CLASSES)
    assert maps.shape == (BATCH, 2, 128, 3, 3)      # 32 -> 15 -> 7 -> 3 entering the last block
    # Grad-CAM needs d(score)/d(maps) per model; model 1's score must not reach model 0's maps.
    grad = torch.autograd.grad(logits[:, 1, 0].sum(), maps)[0]
    assert torch.all(grad[:, 0] == 0) and grad[:, 1].abs().sum() > 0


def test_input_validation():
    packed = PackedNetwork(2, N_CLASSES, None, seeds=[1, 2])
    with pytest.raises(ValueError, match="packed input"):
        packed.classify(torch.zeros(BATCH, 3, 3, SIZE, SIZE))
    with pytest.raises(ArchitectureError, match="no landmark_head"):
        packed.landmarks(torch.zeros(BATCH, 2, 3, SIZE, SIZE))
    with pytest.raises(ArchitectureError, match=r"one positive size per model \(2\), got \[18\]"):
        PackedNetwork(2, N_CLASSES, [18])
    with pytest.raises(ValueError, match=r"shape \(5,\) has no model dimension for M=2"):
        model_view(torch.zeros(5), 2)


@pytest.mark.slow
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("channels", [3, 1])
def test_model_subset_computes_exactly_those_models(train, channels):
    # A pack whose other models stopped computes only the chosen ones (orchestrator/training/train.py):
    # same outputs, same gradients on their slices, zero on the others, and BN statistics
    # updated for them alone.
    dtype = torch.float64
    full = PackedNetwork.from_subnetworks(plain_nets(dtype))
    part = PackedNetwork.from_subnetworks(plain_nets(dtype))
    full.train(train)
    part.train(train)
    x, labels, coords = batch(3, channels, dtype)
    chosen = part.model_index([0, 2])
    feats_full = full.features(x)
    pts_full = full.landmark_head(feats_full.transpose(0, 1)).transpose(0, 1)
    logits_full = full.classifier(feats_full.transpose(0, 1)).transpose(0, 1)
    feats = part.features(x[:, chosen], models=chosen)
    pts = part.landmark_head(feats.transpose(0, 1), chosen).transpose(0, 1)
    logits = part.classifier(feats.transpose(0, 1), chosen).transpose(0, 1)
    torch.testing.assert_close(feats, feats_full[:, chosen], **TOL[dtype])
    torch.testing.assert_close(pts, pts_full[:, chosen], **TOL[dtype])
    torch.testing.assert_close(logits, logits_full[:, chosen], **TOL[dtype])

    mask = full.landmark_mask
    loss_full = (packed_l1_loss(pts_full, coords, mask) + packed_cross_entropy(logits_full, labels))[chosen]
    loss_part = packed_l1_loss(pts, coords[:, chosen], mask[chosen]) + packed_cross_entropy(logits, labels[:, chosen])
    loss_full.sum().backward()
    loss_part.sum().backward()
    full_p, part_p = dict(full.named_parameters()), dict(part.named_parameters())
    for name, p in part_p.items():
        if p.grad is None:          # conv biases in front of training-mode BN: none on either side
            assert full_p[name].grad is None, name
            continue
        g_full = model_view(full_p[name].grad, 3)
        g_part = model_view(p.grad, 3)
        torch.testing.assert_close(g_part[chosen], g_full[chosen], **TOL[dtype])
        assert not g_part[1].any(), f"{name}: the model left out got a gradient"
    fresh = PackedNetwork.from_subnetworks(plain_nets(dtype)).model_views()
    part_views, full_views = part.model_views(), full.model_views()
    for name in (n for n in part_views if "running_" in n):
        torch.testing.assert_close(part_views[name][chosen], full_views[name][chosen], **TOL[dtype])
        assert torch.equal(part_views[name][1], fresh[name][1]), f"{name}: the model left out was updated"


def test_grey_input_modes_compute_the_same():
    # "fold" sums the first conv's weight over its 3 input channels, "repeat" hands the conv 3
    # copies of the grey channel (faster on CUDA): the same function either way.
    from partfer.models.options import ExecOptions
    x, _, _ = batch(3, 1, torch.float64)
    outs = {}
    for mode in ("fold", "repeat", "pad"):
        net = PackedNetwork.from_subnetworks(plain_nets(torch.float64), options=ExecOptions(grey=mode)).eval()
        assert net.options.grey == mode
        outs[mode] = net.classify(x)
    torch.testing.assert_close(outs["fold"], outs["repeat"], **TOL[torch.float64])
    torch.testing.assert_close(outs["fold"], outs["pad"], **TOL[torch.float64])


def test_an_output_frame_is_read_by_the_pack_and_folded_into_each_models_state():
    """A landmark head read in a frame of its own (center + scale * layer) computes those points,
    and model_state hands a plain network the folded layer that computes the same ones."""
    packed = PackedNetwork(3, None, PART_OUTPUTS, seeds=SEEDS).double().eval()
    x, _, _ = batch(3, 3, torch.float64)
    raw = packed.landmarks(x)
    g = torch.Generator().manual_seed(3)
    center = torch.rand(3, max(PART_OUTPUTS), generator=g, dtype=torch.float64)
    scale = torch.tensor([0.03, 0.5, 2.0], dtype=torch.float64)
    packed.landmark_head.set_output_frame_(center, scale)
    framed = packed.landmarks(x)
    for i, n in enumerate(PART_OUTPUTS):
        torch.testing.assert_close(framed[:, i, :n], center[i, :n] + scale[i] * raw[:, i, :n])
        assert not framed[:, i, n:].any(), "padded outputs must stay exactly zero"
        net = SubNetwork(None, n, seed=999).double().eval()
        net.load_state_dict(packed.model_state(i), strict=True)
        torch.testing.assert_close(net.landmarks(x[:, i]), framed[:, i, :n], atol=1e-10, rtol=1e-10)
    # the frame is not part of a checkpoint, and a plain state dict cannot be loaded under it
    assert not any("out_" in k for k in packed.state_dict())
    with pytest.raises(StateDictError, match="frame"):
        packed.load_model_state(0, packed.model_state(0))
    with pytest.raises(ValueError, match="positive scale"):
        packed.landmark_head.set_output_frame_(center, -scale)
