"""Max-pooling with Keras padding "same" (models.pooling) against a brute-force TensorFlow rule, and
the sizes every part of the network derives from it."""
import itertools

import numpy as np
import pytest
import torch

from partfer.models.config import ArchConfig, ArchitectureError, arch_from_kwargs
from partfer.models.counts import count_flops, count_parameters
from partfer.models.describe import describe
from partfer.models.extractor import FeatureExtractor, feature_map_sizes, min_input_size
from partfer.models.pooling import MaxPool, _torch_ceil_out, check_pool, pool_geometry
from partfer.models.subnet import SubNetwork


def tf_same_max_pool(x: np.ndarray, k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """TensorFlow's max_pool(padding="SAME") on (B, C, H, W) by loops, straight from its rule:
    ceil(n / s) outputs, the padding split with the extra pixel after, padded cells ignored.
    Returns the output and, for a gradient of ones, the input gradient (each window's maximum)."""
    b, c, h, w = x.shape

    def axis(n):
        out = -(-n // s)
        before = max((out - 1) * s + k - n, 0) // 2
        return out, [range(max(o * s - before, 0), min(o * s - before + k, n)) for o in range(out)]

    (ho, rows), (wo, cols) = axis(h), axis(w)
    y = np.empty((b, c, ho, wo))
    grad = np.zeros_like(x)
    for bi, ci, i, j in itertools.product(range(b), range(c), range(ho), range(wo)):
        window = [(r, q) for r in rows[i] for q in cols[j]]
        r, q = max(window, key=lambda rq: x[bi, ci, rq[0], rq[1]])
        y[bi, ci, i, j] = x[bi, ci, r, q]
        grad[bi, ci, r, q] += 1.0
    return y, grad


SIZES = [(5, 5), (6, 6), (7, 7), (10, 10), (40, 40), (5, 6), (7, 10), (1, 2)]


@pytest.mark.parametrize("k,s", [(3, 2), (2, 2), (3, 1), (4, 1), (5, 2), (1, 3), (4, 3)])
@pytest.mark.parametrize("h,w", SIZES)
def test_same_max_pool_equals_tensorflows_rule(k, s, h, w):
    gen = torch.Generator().manual_seed(h * 100 + w)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64) - 5.0   # negative: padding must not win
    want, want_grad = tf_same_max_pool(x.numpy(), k, s)
    for memory_format in (torch.contiguous_format, torch.channels_last):
        xi = x.detach().contiguous(memory_format=memory_format).requires_grad_()
        got = MaxPool(k, s, "same")(xi)
        np.testing.assert_array_equal(got.detach().numpy(), want)
        got.sum().backward()
        np.testing.assert_array_equal(xi.grad.numpy(), want_grad)
    assert got.shape[-2:] == (pool_geometry(h, k, s, "same")[2], pool_geometry(w, k, s, "same")[2])


def test_3x3_stride_2_takes_ceil_mode_at_every_size_and_other_settings_the_padded_path():
    # F.max_pool2d(padding=pad_before, ceil_mode=True) has TensorFlow's windows whenever it has
    # its output size, which for 3x3/2 is every size; a stride-1 even kernel needs the -inf pad
    for n in range(1, 400):
        before, _, out = pool_geometry(n, 3, 2, "same")
        assert _torch_ceil_out(n, 3, 2, before) == out
        assert _torch_ceil_out(n, 3, 2, before) == torch.nn.functional.max_pool2d(
            torch.zeros(1, 1, n, 1), (3, 1), (2, 1), (before, 0), ceil_mode=True).shape[2]
    before, _, out = pool_geometry(5, 4, 1, "same")
    assert _torch_ceil_out(5, 4, 1, before) != out      # tested above through the fallback


def test_integer_padding_is_pytorchs_max_pool():
    x = torch.randn(2, 4, 11, 8, dtype=torch.float64)
    for pad in (0, 1):
        torch.testing.assert_close(MaxPool(3, 2, pad)(x), torch.nn.functional.max_pool2d(x, 3, 2, pad),
                                   atol=0, rtol=0)


def test_pool_geometry():
    assert pool_geometry(160, 3, 2, "same") == (0, 1, 80)
    assert pool_geometry(5, 3, 2, "same") == (1, 1, 3)      # odd: one pixel each side
    assert pool_geometry(6, 3, 2, "same") == (0, 1, 3)      # even: the extra pixel after
    assert pool_geometry(6, 4, 1, "same") == (1, 2, 6)
    assert pool_geometry(5, 1, 3, "same") == (0, 0, 2)      # stride over kernel: no padding
    assert pool_geometry(160, 3, 2, 0) == (0, 0, 79)
    assert pool_geometry(160, 3, 2, 1) == (1, 1, 80)
    assert pool_geometry(2, 3, 2, 0)[2] == 0


@pytest.mark.parametrize("bad", [(3, 2, "valid"), (3, 2, "SAME"), (3, 2, 2), (3, 2, -1), (3, 2, True),
                                 (0, 2, "same"), (3, 0, 0), (3.0, 2, 0)])
def test_bad_pooling_is_named(bad):
    with pytest.raises(ValueError, match="bad pooling"):
        check_pool(*bad)
    with pytest.raises(ArchitectureError, match="bad pooling|pool_kernel must be a whole number"):
        ArchConfig(pool_kernel=bad[0], pool_stride=bad[1], pool_padding=bad[2])


def test_arch_round_trips_same_padding():
    arch = ArchConfig(pool_padding="same")
    assert arch_from_kwargs(**arch.to_dict()) == arch


@pytest.mark.parametrize("padding,maps", [("same", [80, 40, 20, 10]), (0, [79, 39, 19, 9])])
def test_map_sizes_at_160_px(padding, maps):
    arch = ArchConfig(pool_padding=padding)
    assert feature_map_sizes(160, 160, arch) == [(160, 160)] + [(m, m) for m in maps]
    ext = FeatureExtractor(pool_padding=padding)
    seen = []
    hooks = [b.pool.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
             for b in ext.blocks]
    x = torch.rand(2, 3, 160, 160)
    for mode in ("train", "eval"):      # training pools before the last ReLU (pooled=True)
        getattr(ext, mode)()
        seen.clear()
        with torch.no_grad():
            _, last = ext(x, return_maps=True)
        assert seen == [(m, m) for m in maps]
        assert last.shape[-2:] == (maps[2], maps[2])      # the last block's map, before its pool


def test_non_square_input():
    arch = ArchConfig(pool_padding="same")
    assert feature_map_sizes(37, 30, arch)[1:] == [(19, 15), (10, 8), (5, 4), (3, 2)]
    ext = FeatureExtractor(widths=(2, 2, 2, 2), pool_padding="same").eval()
    with torch.no_grad():
        assert ext(torch.rand(1, 3, 37, 30), return_maps=True)[1].shape[-2:] == (5, 4)


def test_min_input_size():
    # "same" keeps at least one pixel whatever the size; unpadded 3x3/2 needs 31 for 4 stages
    assert min_input_size(ArchConfig(pool_padding="same")) == 1
    assert min_input_size(ArchConfig(pool_padding=0)) == 31
    ext = FeatureExtractor(widths=(2, 2, 2, 2), pool_padding="same").eval()
    with torch.no_grad():
        assert ext(torch.rand(1, 3, 1, 1)).shape == (1, 2)


def test_parameter_counts_do_not_depend_on_pooling():
    assert count_parameters(FeatureExtractor(pool_padding="same")) == 295_440
    assert count_parameters(SubNetwork(7, None, pool_padding="same", seed=0)) == 329_367
    assert count_parameters(SubNetwork(8, None, pool_padding="same", seed=0)) == 329_496


def test_flops_with_same_pooling():
    # formulas 7-9 on 160/80/40/20 maps: the pools are counted (the module is recognised)
    flops = count_flops(SubNetwork(8, None, pool_padding="same", seed=0), 160)
    size, cin, conv, pool = 160, 3, 0.0, 0.0
    for width in (16, 32, 64, 128):
        conv += 2 * cin * 9 * width * size * size + 2 * width * 9 * width * size * size
        pool += (size / 2) * (size / 2) * width
        size, cin = -(-size // 2), width
    assert flops.conv == conv and flops.pool == pool
    assert flops.total / 1e9 == pytest.approx(0.6712, abs=1e-4)
    report = describe(n_classes_list=(8,), image_size=160, pool_padding="same")
    assert report["architecture"]["pool_padding"] == "same"
    assert any("maps 160/80/40/20" in note and "0.671 G" in note for note in report["notes"])
