"""The architecture's hyper-parameters in one validated record.

Defaults are the paper's network (Section III-C1) with the authors' notebook choices where the
paper is silent (3x3 max-pool, stride 2, no activation between the head's dense layers). Keras
BatchNormalization defaults (epsilon 1e-3, momentum 0.99) are expressed in torch's convention:
torch momentum = 1 - Keras momentum = 0.01.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from partfer.models.pooling import check_pool

HEAD_ACTIVATIONS = ("none", "relu")
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
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if not self.widths or min(self.widths) < 1:
            raise ArchitectureError(f"widths must be positive channel counts, got {self.widths}")
        if self.in_channels < 1:
            raise ArchitectureError(f"in_channels must be >= 1, got {self.in_channels}")
        if self.conv_kernel < 1 or self.conv_kernel % 2 == 0:
            # 'same' padding (kernel // 2) keeps the map size only for odd kernels.
            raise ArchitectureError(f"conv_kernel must be odd, got {self.conv_kernel}")
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
        if self.head_hidden < 1:
            raise ArchitectureError(f"head_hidden must be >= 1, got {self.head_hidden}")
        if self.head_activation not in HEAD_ACTIVATIONS:
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


def arch_from_kwargs(**kwargs) -> ArchConfig:
    """ArchConfig from keyword arguments, naming any that are not architecture settings."""
    known = set(ArchConfig.__dataclass_fields__)
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ArchitectureError(f"unknown architecture settings {unknown}; known: {sorted(known)}")
    return ArchConfig(**kwargs)


__all__ = ["ArchConfig", "ArchitectureError", "CONFIG_KEYS", "HEAD_ACTIVATIONS", "arch_from_kwargs"]
