"""Max-pooling geometry as plain arithmetic: which poolings we compute, and the sizes they give.

Kept apart from the torch module (models.pooling) so that validating a config's `model` section
(models.config, and through it every command that reads a config) needs no torch.
"""
from __future__ import annotations

import numbers

SAME = "same"


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_pool(kernel: int, stride: int, padding: int | str) -> None:
    """Raise ValueError unless (kernel, stride, padding) is a pooling we compute: padding "same",
    or an int in [0, kernel // 2] (PyTorch's limit)."""
    ok = _is_int(kernel) and _is_int(stride) and kernel >= 1 and stride >= 1
    if padding != SAME:
        ok = ok and _is_int(padding) and 0 <= padding <= kernel // 2
    if not ok:
        raise ValueError(f"bad pooling (kernel {kernel!r}, stride {stride!r}, padding {padding!r}); "
                         f"padding is {SAME!r} or an int in [0, kernel // 2]")


def pool_geometry(size: int, kernel: int, stride: int, padding: int | str) -> tuple[int, int, int]:
    """(pad_before, pad_after, out) along one axis of `size` pixels. "same": TensorFlow's rule;
    an int p: p on both sides, floor rounding (out < 1 when the map is too small)."""
    if padding == SAME:
        out = -(-size // stride)
        total = max((out - 1) * stride + kernel - size, 0)
        return total // 2, total - total // 2, out
    return padding, padding, (size + 2 * padding - kernel) // stride + 1
