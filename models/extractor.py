"""The CNN feature extractor: 4 blocks of [conv -> BN -> ReLU] x 2 + max-pool, then global average pool.

One class serves both the plain network (n_models=1) and the packed one (n_models=M): with M
models every convolution is grouped (groups=M), model m owning output channels [m*Co, (m+1)*Co),
and BatchNorm2d over M*Co channels normalises each model's channels over that model's own
samples only. Max-pool, ReLU and global pooling act channel by channel, so they are shared as is.
The state-dict keys are therefore the same for both (only the channel counts differ):
  blocks.{b}.conv{1,2}.{weight,bias}
  blocks.{b}.bn{1,2}.{weight,bias,running_mean,running_var,num_batches_tracked}

Grayscale input: the paper repeats the grey channel 3 times, and a conv over 3 identical channels
equals a conv over 1 channel whose weight is summed over the input channels. A 1-channel input
(per model) takes that path on a CPU ("fold"); packs on CUDA put the grey channel first in 16
zero-padded ones ("pad", see ExecOptions.grey), so the first conv is square per model like the
rest. Weights stay stored with 3 input channels so checkpoints match.

Speed on CUDA (BENCHMARKS.md): cuDNN runs grouped convs with as many outputs
as inputs per group on fast kernels and widening ones (16 -> 32 per model) group by group, so the
widening convs of a pack are split into square ones (split_conv). In training mode the conv bias
in front of BN is not added (BN cancels it; the running mean still receives it) and every block
applies its last ReLU after the max-pool (they commute; only Grad-CAM reads the unpooled maps).
In training, BN -> ReLU [-> max-pool] runs as fused Triton kernels (models.kernels.fused_bn, ExecOptions.fuse):
two passes forward and two backward instead of PyTorch's separate BN, ReLU and pool kernels; they
read a split conv's two outputs where they lie (ExecOptions.interleave), so its interleaving copy goes.
All of these compute the same function; which ones run is fixed when the network is built, by one
models.options.ExecOptions passed down to every block.

Every forward takes an optional `models` index: the input then holds only those models' channels
and only their weights and BN statistics are used (a pack computing only its unstopped models).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from partfer.models.kernels import fused_bn
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.models.init import conv_fans, constant_, he_uniform_
from partfer.models.options import ExecOptions, resolve
from partfer.models.pooling import MaxPool, pool_geometry


class InputTooSmallError(ValueError):
    """The image is too small for the network's pooling stages."""


class ConvBlock(nn.Module):
    """[conv -> BN -> ReLU] x 2 for n_models models side by side (grouped convs), then max-pool."""

    def __init__(self, in_channels: int, out_channels: int, arch: ArchConfig, n_models: int = 1, *,
                 options: ExecOptions | None = None):
        super().__init__()
        self._options = resolve(options)
        self.n_models = n_models
        self.in_channels = in_channels      # per model
        self.out_channels = out_channels    # per model
        k, pad = arch.conv_kernel, arch.conv_kernel // 2
        m = n_models
        self.conv1 = nn.Conv2d(m * in_channels, m * out_channels, k, padding=pad, groups=m, bias=True)
        self.bn1 = nn.BatchNorm2d(m * out_channels, eps=arch.bn_eps, momentum=arch.bn_momentum)
        self.conv2 = nn.Conv2d(m * out_channels, m * out_channels, k, padding=pad, groups=m, bias=True)
        self.bn2 = nn.BatchNorm2d(m * out_channels, eps=arch.bn_eps, momentum=arch.bn_momentum)
        self.pool = MaxPool(arch.pool_kernel, arch.pool_stride, arch.pool_padding)

    @property
    def options(self) -> ExecOptions:
        """How this block computes (grey input, split convs, fused kernels); fixed
        at construction, read-only: every choice computes the same function."""
        return self._options

    def _weights(self, t: torch.Tensor, models: torch.Tensor | None) -> torch.Tensor:
        """The chosen models' rows of a model-major tensor (all of it when models is None)."""
        return t if models is None else t.unflatten(0, (self.n_models, -1))[models].flatten(0, 1)

    def _all(self, models: torch.Tensor | None):
        """An index over the model axis: the chosen models, or all of them."""
        return slice(None) if models is None else models

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor, models: torch.Tensor | None, first: bool,
              bias: bool = True, parts: bool = False) -> torch.Tensor | list[torch.Tensor]:
        """The conv's output; with parts=True a split widening conv (ExecOptions.split) with ratio 2
        returns its two square convs' outputs as they are, for the fused kernels to interleave."""
        groups = self.n_models if models is None else len(models)
        weight = self._weights(conv.weight, models)
        bias_t = self._weights(conv.bias, models) if bias and conv.bias is not None else None
        if first and self.in_channels > 1 and x.shape[1] == groups:
            # One grey channel per model stands for in_channels identical copies.
            mode = self._options.grey
            if mode == "auto":
                mode = "pad" if x.is_cuda and groups > 1 else "fold"
            if mode == "fold":
                # fold the copies into the weight: same result, in_channels-times fewer MACs, but
                # with groups == channels PyTorch runs its slow native depthwise kernels on CUDA
                weight = weight.sum(dim=1, keepdim=True)
            elif mode == "pad":
                # the folded weight in channel 0 of as many input channels as outputs: a square
                # grouped conv (see ExecOptions.split), paid for with a zero-filled input; the
                # fastest of the three on a GPU (BENCHMARKS.md)
                x, weight = _pad_grey(x, weight.sum(dim=1, keepdim=True), weight.shape[0] // groups)
            else:
                # "repeat": hand cuDNN the copies (a cheap 1-channel expand), keeping it on its
                # grouped-convolution kernels rather than the depthwise ones (BENCHMARKS.md)
                b, _, h, w = x.shape
                x = x.unsqueeze(2).expand(b, groups, self.in_channels, h, w).reshape(
                    b, groups * self.in_channels, h, w)
        ratio = _widening(x.shape[1], weight.shape[0], groups)
        split_opt = self._options.split
        split = split_opt == "on" or (split_opt == "auto" and x.is_cuda and groups > 1)
        if split and ratio > 1:
            return split_conv(x, weight, bias_t, conv, groups, ratio,
                              interleave=not (parts and ratio == 2 and bias_t is None))
        if weight is conv.weight and bias_t is conv.bias:
            return conv(x)         # the module itself, so forward hooks (FLOP counting) see it
        return F.conv2d(x, weight, bias_t, conv.stride, conv.padding, conv.dilation, groups)

    def _conv_bn(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, models: torch.Tensor | None,
                 first: bool) -> torch.Tensor:
        """conv -> BN. In training mode the conv bias is not added to the activation: BN subtracts
        the batch mean, which cancels a per-channel constant exactly (same output, and the bias
        gets no gradient either way), so the full-size add and its backward are skipped. The bias
        still enters the running mean, updated as if it had been added, so eval mode and the
        checkpoints are those of the plain network."""
        if not (bn.training and bn.track_running_stats):
            return self._bn(bn, self._conv(conv, x, models, first), models, None)
        return self._bn(bn, self._conv(conv, x, models, first, bias=False), models,
                        self._weights(conv.bias, models) if conv.bias is not None else None)

    def _bn(self, bn: nn.BatchNorm2d, x: torch.Tensor, models: torch.Tensor | None,
            shift: torch.Tensor | None) -> torch.Tensor:
        """BatchNorm over the chosen models' channels. shift: a per-channel constant left out of x
        that the running mean must still see (the conv bias, see _conv_bn)."""
        if not (bn.training and bn.track_running_stats):
            if models is None:
                return bn(x)
            return F.batch_norm(x, self._weights(bn.running_mean, models), self._weights(bn.running_var, models),
                                self._weights(bn.weight, models), self._weights(bn.bias, models),
                                False, 0.0, bn.eps)
        # the factor nn.BatchNorm2d would use (a cumulative average when momentum is None)
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        if models is None and shift is None:
            mean, var = bn.running_mean, bn.running_var        # updated in place by F.batch_norm
        else:
            # copies, updated by F.batch_norm, then written back; autograd may keep them, so they
            # are not changed after the call
            mean = self._weights(bn.running_mean, models).clone()
            var = self._weights(bn.running_var, models).clone()
            if shift is not None:
                # the running mean of (x + shift) is the running mean of x, plus shift
                mean -= shift.detach().to(mean.dtype)
        out = F.batch_norm(x, mean, var, self._weights(bn.weight, models), self._weights(bn.bias, models),
                           True, factor, bn.eps)
        if mean is not bn.running_mean:
            with torch.no_grad():
                new_mean = mean + shift.detach().to(mean.dtype) if shift is not None else mean
                bn.running_mean.unflatten(0, (self.n_models, -1))[self._all(models)] = new_mean.view(-1, self.out_channels)
                bn.running_var.unflatten(0, (self.n_models, -1))[self._all(models)] = var.view(-1, self.out_channels)
        return out

    def _fuse(self, x: torch.Tensor, models: torch.Tensor | None) -> bool:
        """Whether this forward takes the fused BN kernels (see ExecOptions.fuse)."""
        bn = self.bn1
        fuse = self._options.fuse
        if fuse == "off" or not (bn.training and bn.track_running_stats):
            return False
        if torch.compiler.is_compiling():      # inductor fuses these itself
            return False
        if fuse == "on":
            return True
        groups = self.n_models if models is None else len(models)
        return x.is_cuda and groups > 1 and fused_bn.available(x)

    def _pool_args(self) -> tuple[int, int, int | str]:
        """The pool as fused_bn.bn_relu takes it: (kernel, stride, padding), padding an int or "same"."""
        p = self.pool
        return p.kernel_size, p.stride, p.padding

    def _fused(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, x: torch.Tensor, models: torch.Tensor | None,
               first: bool, pooled: bool) -> torch.Tensor:
        """conv -> BN (training) -> ReLU [-> max-pool] with the fused kernels: the conv bias is left
        out (BN cancels it) and only enters the running mean, as in _conv_bn; the kernels update
        the running statistics."""
        groups = self.n_models if models is None else len(models)
        weight, bias = self._weights(bn.weight, models), self._weights(bn.bias, models)
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        co = self.out_channels
        index = None if models is None else (models[:, None] * co   # models: on the device, as _weights needs
                                             + torch.arange(co, device=models.device)).flatten()
        running = fused_bn.Running(bn.running_mean, bn.running_var, factor, index,
                                   self._weights(conv.bias, models) if conv.bias is not None else None)
        y = self._conv(conv, x, models, first, bias=False, parts=self._options.interleave != "copy")
        pool = self._pool_args() if pooled else None
        if isinstance(y, list):     # a split conv's two parts, read where they lie
            return fused_bn.bn_relu(y, weight, bias, bn.eps, pool, group_channels=y[0].shape[1] // groups,
                                    running=running)[0]
        return fused_bn.bn_relu(y, weight, bias, bn.eps, pool, running=running)[0]

    def forward(self, x: torch.Tensor, models: torch.Tensor | None = None, pooled: bool = False) -> torch.Tensor:
        """The block's activation BEFORE pooling (what Grad-CAM reads); self.pool follows it.

        models: indices of the models whose channels x holds (default: all n_models), so a pack
        whose other models stopped computes only the ones still training.
        pooled: return the pooled activation instead. The last ReLU then runs after the pool, on a
        quarter of the pixels: max-pool and ReLU commute (both monotone), ties and gradients
        included, so the result is the same as pooling the returned activation.
        """
        if self._fuse(x, models):
            x = self._fused(self.conv1, self.bn1, x, models, first=True, pooled=False)
            return self._fused(self.conv2, self.bn2, x, models, first=False, pooled=pooled)
        x = F.relu(self._conv_bn(self.conv1, self.bn1, x, models, first=True), inplace=True)
        x = self._conv_bn(self.conv2, self.bn2, x, models, first=False)
        if pooled:
            return F.relu(self.pool(x), inplace=True)
        return F.relu(x, inplace=True)

    @torch.no_grad()
    def reset_model_(self, m: int, generator: torch.Generator | None) -> None:
        """Initialise model m's slice: He-uniform conv weights, zero biases, fresh BN."""
        co = self.out_channels
        rows = slice(m * co, (m + 1) * co)
        k = self.conv1.kernel_size[0]
        for conv, cin in ((self.conv1, self.in_channels), (self.conv2, self.out_channels)):
            fan_in, _ = conv_fans(cin, co, k)
            he_uniform_(conv.weight[rows], fan_in, generator)
            constant_(conv.bias[rows], 0.0)
        for bn in (self.bn1, self.bn2):
            constant_(bn.weight[rows], 1.0)
            constant_(bn.bias[rows], 0.0)
            constant_(bn.running_mean[rows], 0.0)
            constant_(bn.running_var[rows], 1.0)


def _widening(in_channels: int, out_channels: int, groups: int) -> int:
    """r when every group maps c >= 8 input channels to r*c outputs (r an integer), else 1 (fewer
    than 8 channels per group would make the square convs depthwise-like, which is no faster)."""
    cin, cout = in_channels // groups, out_channels // groups
    return cout // cin if cin >= 8 and cout > cin and cout % cin == 0 else 1


def split_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, conv: nn.Conv2d,
               groups: int, ratio: int, interleave: bool = True) -> torch.Tensor | list[torch.Tensor]:
    """A grouped conv whose groups widen c channels to ratio*c, computed as `ratio` grouped convs
    of c -> c channels per group, the outputs interleaved back per group (interleave=False: the
    `ratio` outputs as a list, output j holding channel g * ratio*c + j*c + i as g*c + i; no bias).

    The same function, but cuDNN runs grouped convs with as many outputs as inputs per group on
    its fast grouped kernels and widening ones group by group, far slower for their FLOPs
    (BENCHMARKS.md). The interleave is one copy of the output (and of its gradient).
    """
    c = x.shape[1] // groups
    w = weight.unflatten(0, (groups, ratio, c))

    outs = [F.conv2d(x, w[:, j].flatten(0, 1), None, conv.stride, conv.padding, conv.dilation, groups)
            for j in range(ratio)]
    if not interleave:
        if bias is not None:
            raise ValueError("split_conv returns its parts without a bias only")
        return outs
    if outs[0].is_contiguous(memory_format=torch.channels_last) and not outs[0].is_contiguous():
        # channels-last memory: interleave along the channel axis of the physical (B, H, W, C) layout
        y = torch.stack([o.permute(0, 2, 3, 1).unflatten(3, (groups, c)) for o in outs], dim=4)
        y = y.flatten(3, 5).permute(0, 3, 1, 2)
    else:
        y = torch.stack([o.unflatten(1, (groups, c)) for o in outs], dim=2).flatten(1, 3)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


def _pad_grey(x: torch.Tensor, weight: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, G, H, W) grey input and its (G*O, 1, k, k) folded weight -> `width` input channels per
    group, the grey one first and zeros after, in x's memory format; the weight likewise."""
    b, g, h, w = x.shape
    # built in the dtype autocast would cast it to: half the bytes, and no separate cast pass
    kind = x.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else x.dtype
    cl = x.is_cuda or x.is_contiguous(memory_format=torch.channels_last)
    if cl:
        padded = x.new_zeros(b, h, w, g, width, dtype=dtype)
        padded[..., 0] = x.permute(0, 2, 3, 1)
        padded = padded.flatten(3, 4).permute(0, 3, 1, 2)
    else:
        padded = x.new_zeros(b, g, width, h, w, dtype=dtype)
        padded[:, :, 0] = x
        padded = padded.flatten(1, 2)
    return padded, F.pad(weight, (0, 0, 0, 0, 0, width - 1))


def feature_map_sizes(height: int, width: int, arch: ArchConfig) -> list[tuple[int, int]]:
    """(H, W) entering each block, plus the size after the last pool (input to global pooling)."""
    sizes = [(height, width)]
    k, s, p = arch.pool_kernel, arch.pool_stride, arch.pool_padding
    for _ in arch.widths:
        h, w = sizes[-1]
        sizes.append((pool_geometry(h, k, s, p)[2], pool_geometry(w, k, s, p)[2]))
    return sizes


def min_input_size(arch: ArchConfig) -> int:
    """Smallest square input whose every pooling stage still produces at least one pixel."""
    size = 1
    while min(feature_map_sizes(size, size, arch)[-1]) < 1:
        size += 1
    return size


class FeatureExtractor(nn.Module):
    """Image(s) -> 128-D feature vector per model.

    Input (B, n_models * c, H, W) with c = in_channels, or c = 1 for the grayscale path;
    output (B, n_models * feature_dim). With return_maps=True also the last block's activation
    (after its ReLU, before its max-pool): (B, n_models * feature_dim, h, w), for Grad-CAM.
    Each block's max-pool is `blocks[b].pool` (a module, so FLOP counting hooks see it).
    """

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3,
                 pool_kernel: int = 3, pool_stride: int = 2, pool_padding: int | str = 0,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01, conv_kernel: int = 3,
                 *, n_models: int = 1, options: ExecOptions | None = None):
        super().__init__()
        if n_models < 1:
            raise ArchitectureError(f"n_models must be >= 1, got {n_models}")
        self.arch = ArchConfig(widths=widths, in_channels=in_channels, conv_kernel=conv_kernel,
                               pool_kernel=pool_kernel, pool_stride=pool_stride, pool_padding=pool_padding,
                               bn_eps=bn_eps, bn_momentum=bn_momentum)
        self.n_models = n_models
        self._options = resolve(options)
        chans = (in_channels,) + self.arch.widths
        self.blocks = nn.ModuleList(
            ConvBlock(cin, cout, self.arch, n_models, options=self._options)
            for cin, cout in zip(chans[:-1], chans[1:]))

    @classmethod
    def from_arch(cls, arch: ArchConfig, n_models: int = 1, *,
                  options: ExecOptions | None = None) -> "FeatureExtractor":
        return cls(arch.widths, arch.in_channels, arch.pool_kernel, arch.pool_stride, arch.pool_padding,
                   arch.bn_eps, arch.bn_momentum, arch.conv_kernel, n_models=n_models, options=options)

    @property
    def options(self) -> ExecOptions:
        """How every block computes (models.options); fixed at construction."""
        return self._options

    @property
    def feature_dim(self) -> int:
        return self.arch.feature_dim

    def _check_input(self, x: torch.Tensor, n_models: int) -> None:
        m, c = n_models, self.arch.in_channels
        if x.dim() != 4 or x.shape[1] not in (m * c, m):
            raise ValueError(f"extractor expects (B, {m * c} or {m}, H, W) input, got {tuple(x.shape)}")
        if min(feature_map_sizes(x.shape[2], x.shape[3], self.arch)[-1]) < 1:
            raise InputTooSmallError(
                f"input {x.shape[2]}x{x.shape[3]} is too small for {len(self.arch.widths)} pooling stages; "
                f"minimum is {min_input_size(self.arch)}x{min_input_size(self.arch)}")

    def forward(self, x: torch.Tensor, return_maps: bool = False, model_axis: bool = False,
                models: torch.Tensor | None = None):
        """Features (B, n_models * F); with return_maps also the last block's activation.

        model_axis=True returns that activation as (B, n_models, F, h, w). Either way the returned
        tensor is the one the rest of the network is computed from, so autograd.grad of a score
        with respect to it works (Grad-CAM). models: a 1-D index tensor of the models x is for
        (x then holds len(models) models' channels); only their weights and BN statistics are used.
        """
        n = self.n_models if models is None else len(models)
        self._check_input(x, n)
        for block in self.blocks[:-1]:
            x = block(x, models, pooled=True)
        last = self.blocks[-1]
        if not return_maps:
            return last(x, models, pooled=True).mean(dim=(2, 3))   # global average pooling
        maps = last(x, models)
        if model_axis:
            maps = maps.unflatten(1, (n, self.feature_dim))
            x = last.pool(maps.flatten(1, 2))
        else:
            x = last.pool(maps)
        return x.mean(dim=(2, 3)), maps

    @torch.no_grad()
    def reset_model_(self, m: int, generator: torch.Generator | None) -> None:
        """Initialise model m's slice, block by block (the draw order is part of reproducibility)."""
        for block in self.blocks:
            block.reset_model_(m, generator)
