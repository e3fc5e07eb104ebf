"""Which parts of a network train in which stage, and in which mode (shared by plain and packed).

Stages (paper Section III-D): "landmark" = extractor + landmark head (L1); "head" = classifier only,
extractor frozen; "finetune" = extractor + classifier; "baseline" = the same parts, from scratch.
A frozen extractor runs in eval mode, as Keras runs a frozen BatchNormalization in inference mode:
it normalises with its running statistics and does not update them.
"""
from __future__ import annotations

from torch import nn

PART_NAMES = ("extractor", "landmark_head", "classifier")

STAGE_PARTS: dict[str, tuple[str, ...]] = {
    "landmark": ("extractor", "landmark_head"),
    "head": ("classifier",),
    "finetune": ("extractor", "classifier"),
    "baseline": ("extractor", "classifier"),
}

# Parts that the stage's forward pass uses without training them (run in eval mode).
STAGE_FROZEN: dict[str, tuple[str, ...]] = {
    "landmark": (),
    "head": ("extractor",),
    "finetune": (),
    "baseline": (),
}


class StageError(ValueError):
    """An unknown stage, or a stage that needs a head the network does not have."""


def _parts(net: nn.Module, stage: str) -> tuple[str, ...]:
    if stage not in STAGE_PARTS:
        raise StageError(f"unknown stage {stage!r}; known: {sorted(STAGE_PARTS)}")
    needed = STAGE_PARTS[stage] + STAGE_FROZEN[stage]
    missing = [p for p in needed if getattr(net, p, None) is None]
    if missing:
        raise StageError(f"stage {stage!r} needs {missing}, which this network does not have")
    return STAGE_PARTS[stage]


def trainable_parameters(net: nn.Module, stage: str) -> list[nn.Parameter]:
    """The parameters the stage's optimizer updates, in a stable order."""
    return [p for part in _parts(net, stage) for p in getattr(net, part).parameters()]


# Stages in which frozen_bn may hold the extractor's BN statistics: the transfer stages after the
# landmark one (the authors call the pre-trained extractor with training=False in both).
FROZEN_BN_STAGES = ("head", "finetune")


def set_stage_mode(net: nn.Module, stage: str, frozen_bn: bool = False) -> None:
    """Train mode on the trained parts, eval mode on frozen ones; requires_grad only where trained.

    frozen_bn (head and finetune stages): every BatchNorm of the extractor runs in inference mode,
    normalising with the running statistics it came with and never updating them, while its
    scale and shift (and the convs) still train: Keras's `extractor(x, training=False)`.

    Turning requires_grad off on the unused and frozen parts also stops autograd from recording
    them, so the head stage does no backward pass through the extractor. A later net.train()
    would put the frozen extractor's BN back in train mode: after validating with net.eval(),
    call set_stage_mode again rather than net.train().
    """
    trained = _parts(net, stage)
    frozen = STAGE_FROZEN[stage]
    for name in PART_NAMES:
        part = getattr(net, name, None)
        if part is None:
            continue
        part.train(name in trained)
        if name in frozen:
            part.eval()
        part.requires_grad_(name in trained)
    if frozen_bn:
        if stage not in FROZEN_BN_STAGES:
            raise StageError(f"frozen BN statistics apply to the {' and '.join(FROZEN_BN_STAGES)} stages, not {stage!r}")
        for module in net.extractor.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    net.training = True
