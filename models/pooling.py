"""Max-pooling geometry and module: a symmetric integer padding (PyTorch's) or Keras' "same".

The authors' Keras code pools with padding "same" (TensorFlow's rule: ceil(n / stride) outputs,
the padding split with the extra pixel after, padded cells never the maximum), which keeps
160 px maps at 80/40/20/10 where unpadded pooling gives 79/39/19/9. Every pooled size in the
project comes from pool_geometry (models.pool_rules, torch-free), so the PyTorch module, the fused
kernels, the size checks and the FLOP counts cannot disagree.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partfer.models.pool_rules import SAME, check_pool, pool_geometry


def _torch_ceil_out(size: int, kernel: int, stride: int, pad: int) -> int:
    """F.max_pool2d's output size with ceil_mode=True (ATen's pooling_output_shape)."""
    out = -(-(size + 2 * pad - kernel) // stride) + 1
    if (out - 1) * stride >= size + pad:     # the last window must start inside the image or left padding
        out -= 1
    return out


class MaxPool(nn.Module):
    """Max-pool with pool_geometry's windows. A module (kept as each block's `pool`) so that
    Grad-CAM can pool the maps it reads and FLOP counting hooks see it.

    "same" runs as F.max_pool2d with the leading padding and ceil_mode (the windows are then
    TensorFlow's; for 3x3/2 at every size) when that gives TensorFlow's output size, otherwise on an
    explicitly -inf-padded input."""

    def __init__(self, kernel_size: int, stride: int, padding: int | str = 0):
        super().__init__()
        check_pool(kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding!r}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size, self.stride, self.padding
        if p != SAME:
            return F.max_pool2d(x, k, s, p)
        (ph, ph_after, ho), (pw, pw_after, wo) = (pool_geometry(n, k, s, p) for n in x.shape[-2:])
        if (_torch_ceil_out(x.shape[-2], k, s, ph), _torch_ceil_out(x.shape[-1], k, s, pw)) == (ho, wo):
            return F.max_pool2d(x, k, s, (ph, pw), ceil_mode=True)
        return F.max_pool2d(F.pad(x, (pw, pw_after, ph, ph_after), value=float("-inf")), k, s)


__all__ = ["SAME", "MaxPool", "check_pool", "pool_geometry"]
