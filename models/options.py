"""How a network computes, fixed when it is built: one record passed down to every ConvBlock.

Every choice here is execution only: each value computes the same function (outputs, gradients,
BN statistics up to float rounding), so a checkpoint trained with one set of options loads and
predicts the same under any other. They exist because the fastest route differs between a CPU
and a GPU and between one model and a pack (models.extractor's docstring says which is faster
where; the measurements are in BENCHMARKS.md).
"""
from __future__ import annotations

from dataclasses import dataclass, fields

# Allowed values per field; "auto" picks by device and model count at each forward.
CHOICES: dict[str, tuple[str, ...]] = {
    # how a 1-channel (grey) input meets a 3-channel first conv: fold the copies into the weight |
    # repeat the channel | pad it into as many zero channels as outputs (a square grouped conv) |
    # auto (pad for several models on CUDA, fold otherwise)
    "grey": ("auto", "fold", "repeat", "pad"),
    # a grouped conv that widens each group (16 -> 32 channels per model) as several square ones
    # (models.extractor.split_conv): auto = on CUDA with several models | on | off
    "split": ("auto", "on", "off"),
    # training-mode BN -> ReLU [-> max-pool] as fused Triton kernels (models.kernels.fused_bn):
    # auto = on CUDA with several models when Triton is installed | on (wherever Triton runs: a
    # CPU through its interpreter) | off
    "fuse": ("auto", "on", "off"),
    # where the fused kernels read a split conv's output: auto = its parts where they lie | copy =
    # interleaved into one tensor first
    "interleave": ("auto", "copy"),
}


class ExecOptionsError(ValueError):
    """An execution option with a value the network does not know."""


@dataclass(frozen=True)
class ExecOptions:
    """The execution choices of ConvBlock (see CHOICES for each field's values)."""
    grey: str = "auto"
    split: str = "auto"
    fuse: str = "auto"
    interleave: str = "auto"

    def __post_init__(self) -> None:
        for f in fields(self):
            value, allowed = getattr(self, f.name), CHOICES[f.name]
            if value not in allowed:
                raise ExecOptionsError(
                    f"execution option {f.name} must be one of {', '.join(allowed)}; got {value!r}")


def resolve(options: ExecOptions | None) -> ExecOptions:
    """The options a network is built with: the defaults when none are given."""
    if options is None:
        return ExecOptions()
    if not isinstance(options, ExecOptions):
        raise TypeError(f"options must be an ExecOptions, got {type(options).__name__}")
    return options


__all__ = ["CHOICES", "ExecOptions", "ExecOptionsError", "resolve"]
