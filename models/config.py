"""The architecture's hyper-parameters in one validated record.

Defaults are the paper's network (Section III-C1) with the authors' notebook choices where the
paper is silent (3x3 max-pool, stride 2, no activation between the head's dense layers). Keras
BatchNormalization defaults (epsilon 1e-3, momentum 0.99) are expressed in torch's convention:
torch momentum = 1 - Keras momentum = 0.01.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

from partfer.models.pool_rules import check_pool

HEAD_ACTIVATIONS = ("none", "relu")
# Upper bounds of what a config may ask for, and so of what `partfer export` can write into a
# model.json: generous beside the paper's network (widths 16..128, head 128, 160 px input) yet
# small enough that a hostile or mistyped value cannot make a loader allocate gigabytes (a
# 100,000-wide conv holds 9e10 weights). Four poolings need at least 24 px
# (orchestrator.config_schema reads these too).
MAX_WIDTH = 2048
MAX_BLOCKS = 8
MAX_HEAD_HIDDEN = 4096
MAX_POOL = 8                    # pool kernel and stride
IMAGE_SIZE_MIN = 24
IMAGE_SIZE_MAX = 1024
# The settings a run config's `model:` section holds (ArchConfig.from_config); the input channels
# and conv kernel are fixed by the paper and the prepared data, not by a config.
CONFIG_KEYS = ("widths", "pool_kernel", "pool_stride", "pool_padding", "bn_eps", "bn_momentum",
               "head_hidden", "head_activation")


class ArchitectureError(ValueError):
    """An architecture setting that cannot build a working network."""


@dataclass(frozen=True)
class ArchConfig:
    widths: tuple[int, ...] = (16, 32, 64, 128)
    in_channels: int = 3
    conv_kernel: int = 3
    pool_kernel: int = 3
    pool_stride: int = 2
    pool_padding: int | str = 0     # "same" (Keras/TensorFlow, configs/paper.yaml) or an int (PyTorch's)
    bn_eps: float = 1e-3
    bn_momentum: float = 0.01
    head_hidden: int = 128
    head_activation: str = "none"

    def __post_init__(self) -> None:
        if (isinstance(self.widths, (str, bytes)) or not hasattr(self.widths, "__iter__")
                or not all(_whole(w) for w in self.widths)):
            raise ArchitectureError(f"widths must be a list of whole numbers, got {self.widths!r}")
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not 1 <= len(self.widths) <= MAX_BLOCKS or not all(1 <= w <= MAX_WIDTH for w in self.widths):
            raise ArchitectureError(f"widths must be 1 to {MAX_BLOCKS} channel counts in [1, {MAX_WIDTH}], "
                                    f"got {list(self.widths)}")
        for name in ("in_channels", "conv_kernel", "pool_kernel", "pool_stride", "head_hidden"):
            if not _whole(getattr(self, name)):
                raise ArchitectureError(f"{name} must be a whole number, got {getattr(self, name)!r}")
        for name in ("bn_eps", "bn_momentum"):
            if not _number(getattr(self, name)):
                raise ArchitectureError(f"{name} must be a number, got {getattr(self, name)!r}")
        if not 1 <= self.in_channels <= 4:
            raise ArchitectureError(f"in_channels must be in [1, 4], got {self.in_channels}")
        if not max(self.pool_kernel, self.pool_stride) <= MAX_POOL:
            raise ArchitectureError(f"pool_kernel and pool_stride must be <= {MAX_POOL}, got "
                                    f"{self.pool_kernel} and {self.pool_stride}")
        if self.conv_kernel < 1 or self.conv_kernel > 7 or self.conv_kernel % 2 == 0:
            # 'same' padding (kernel // 2) keeps the map size only for odd kernels.
            raise ArchitectureError(f"conv_kernel must be odd and at most 7, got {self.conv_kernel}")
        try:
            check_pool(self.pool_kernel, self.pool_stride, self.pool_padding)
        except ValueError as exc:
            raise ArchitectureError(str(exc)) from None
        if not self.bn_eps > 0:
            raise ArchitectureError(f"bn_eps must be > 0, got {self.bn_eps}")
        # A fixed momentum (as in Keras) makes BN's num_batches_tracked pure bookkeeping, which is
        # what lets the packed network share one counter among its models.
        if self.bn_momentum is None or not 0.0 < float(self.bn_momentum) <= 1.0:
            raise ArchitectureError(f"bn_momentum must be a number in (0, 1], got {self.bn_momentum}")
        if not 1 <= self.head_hidden <= MAX_HEAD_HIDDEN:
            raise ArchitectureError(f"head_hidden must be in [1, {MAX_HEAD_HIDDEN}], got {self.head_hidden}")
        if not isinstance(self.head_activation, str) or self.head_activation not in HEAD_ACTIVATIONS:
            raise ArchitectureError(
                f"head_activation must be one of {HEAD_ACTIVATIONS}, got {self.head_activation!r}")

    @property
    def feature_dim(self) -> int:
        """Size of the extractor's output vector (the last block's width, after global pooling)."""
        return self.widths[-1]

    @classmethod
    def from_config(cls, model_cfg: dict) -> "ArchConfig":
        """The network a run config's `model:` section describes. Every key in CONFIG_KEYS must be
        there (a missing one would silently fall back to a default the run never asked for), and
        no other: a misspelt setting is refused, named, rather than ignored."""
        unknown = sorted(set(model_cfg) - set(CONFIG_KEYS), key=str)
        missing = [k for k in CONFIG_KEYS if k not in model_cfg]
        if unknown or missing:
            parts = ([f"unknown settings {unknown}"] if unknown else []) + \
                    ([f"missing settings {missing}"] if missing else [])
            raise ArchitectureError(f"model: {'; '.join(parts)}; a model section has exactly {list(CONFIG_KEYS)}")
        return cls(**{k: model_cfg[k] for k in CONFIG_KEYS})

    def to_dict(self) -> dict:
        """Plain JSON-friendly form (for checkpoints' metadata and configs)."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def arch_from_kwargs(**kwargs) -> ArchConfig:
    """ArchConfig from keyword arguments, naming any that are not architecture settings."""
    known = set(ArchConfig.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ArchitectureError(f"unknown architecture settings {unknown}; known: {sorted(known)}")
    return ArchConfig(**kwargs)


__all__ = ["ArchConfig", "ArchitectureError", "CONFIG_KEYS", "HEAD_ACTIVATIONS", "IMAGE_SIZE_MAX", "IMAGE_SIZE_MIN",
           "MAX_BLOCKS", "MAX_HEAD_HIDDEN", "MAX_POOL", "MAX_WIDTH", "arch_from_kwargs"]
