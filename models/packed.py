"""M independent sub-networks computed as ONE network: a pack, the unit the scheduler trains (README, "Speed on a GPU").

Layout: convolutions grouped by model (groups=M; model m owns channels [m*Co, (m+1)*Co)), BN over
M*Co channels (per-model statistics, since model m's channels only ever see model m's samples),
shared channel-wise max-pool/ReLU/global pooling, heads as batched matmuls (models.packed_heads).
Input x: (B, M, Cin, H, W), model m sees x[:, m] (its own batch, e.g. its own fold's samples);
Cin = 1 takes the grayscale path (conv1 weight summed over its 3 input channels).

Per-model views (what the training loop uses to freeze stopped models and keep best weights):
every parameter and persistent buffer except BN's `num_batches_tracked` has the model as the
OUTERMOST part of dim 0, so `t.unflatten(0, (M, -1))[m]` is model m's slice -- a view, also for
channels_last weights. `num_batches_tracked` is one scalar per BN shared by all models; with a
fixed BN momentum (enforced by ArchConfig) it is bookkeeping only, so it is excluded from
per-model views, carried as is by model_state(), and left unchanged by load_model_state().

State-dict keys match SubNetwork's (extractor.*, landmark_head.fc*, classifier.fc*), only the
shapes differ: conv/BN tensors are M times larger along dim 0, head weights are (M, in, out).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from partfer.models import stages
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.models.extractor import FeatureExtractor
from partfer.models.init import draw_seeds, part_generators
from partfer.models.options import ExecOptions
from partfer.models.packed_heads import PackedDenseStack, packed_classifier_head, packed_landmark_head
from partfer.models.subnet import SubNetwork

HEADS = ("landmark_head", "classifier")
SHARED_BUFFER_SUFFIX = "num_batches_tracked"


class StateDictError(ValueError):
    """A plain state dict that does not fit a slot of the packed network."""


def model_view(tensor: torch.Tensor, n_models: int) -> torch.Tensor:
    """(M, ...) view of a packed tensor whose dim 0 is model-major (works for channels_last too)."""
    if tensor.dim() == 0 or tensor.shape[0] % n_models:
        raise ValueError(f"tensor of shape {tuple(tensor.shape)} has no model dimension for M={n_models}")
    return tensor.unflatten(0, (n_models, -1))


def _model_index(models: Sequence[int] | torch.Tensor, n_models: int) -> torch.Tensor:
    """Indices from a list of ints, an index tensor, or a (M,) boolean mask."""
    idx = torch.as_tensor(models)
    if idx.dtype == torch.bool:
        if idx.shape != (n_models,):
            raise ValueError(f"model mask must have shape ({n_models},), got {tuple(idx.shape)}")
        idx = idx.nonzero().flatten()
    idx = idx.to(torch.long).flatten()
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n_models):
        raise IndexError(f"model indices {idx.tolist()} out of range for {n_models} models")
    return idx


def _index_on(idx: torch.Tensor):
    """device -> idx there, copied once per device (not once per tensor: a copy to a GPU waits
    for its queue to drain)."""
    copies: dict[torch.device, torch.Tensor] = {}

    def on(device: torch.device) -> torch.Tensor:
        if device not in copies:
            copies[device] = idx.to(device)
        return copies[device]
    return on


@torch.no_grad()
def _copy_models(dst: dict[str, torch.Tensor], src: dict[str, torch.Tensor],
                 models: Sequence[int] | torch.Tensor, n_models: int) -> None:
    """dst[name][m] = src[name][m] for the chosen models, (M, ...) tensors on any devices."""
    idx = _model_index(models, n_models)
    if not idx.numel():
        return
    on = _index_on(idx)
    for name, d in dst.items():
        s = src[name]
        d.index_copy_(0, on(d.device), s.index_select(0, on(s.device)).to(d.device))


@dataclass(frozen=True)
class FrozenSlices:
    """Models' slices held fixed in a network's tensors: written back from a snapshot after every
    optimizer step (see PackedNetwork.frozen_slices).

    Why: a stopped model must not move while the rest of its pack trains, but Adam's momentum and
    BN's running statistics move it at every step. Which models are held is an (M,) boolean tensor
    on the network's device, read by every write-back and changed in place when more models stop:
    the write-back stays the same kernels on the same tensors, and no step copies anything from
    the host (such a copy waits for the GPU's queue to drain).
    """
    targets: tuple[torch.Tensor, ...]     # (M, ...) views into the network's tensors
    values: tuple[torch.Tensor, ...]      # (M, ...) the snapshot's tensors themselves (not copies)
    masks: tuple[torch.Tensor, ...]       # (M, 1, ...) views of `mask`, one per target
    mask: torch.Tensor                    # (M,) bool: the models held

    @torch.no_grad()
    def apply_(self) -> None:
        for target, value, held in zip(self.targets, self.values, self.masks):
            torch.where(held, value, target, out=target)


class PackedNetwork(nn.Module):
    """M sub-networks with the same architecture and heads, trained and evaluated together."""

    def __init__(self, n_models: int, n_classes: int | None, landmark_outputs: list[int] | None, *,
                 widths: tuple[int, ...] = (16, 32, 64, 128), in_channels: int = 3, conv_kernel: int = 3,
                 pool_kernel: int = 3, pool_stride: int = 2, pool_padding: int | str = 0,
                 bn_eps: float = 1e-3, bn_momentum: float = 0.01,
                 head_hidden: int = 128, head_activation: str = "none",
                 seeds: Sequence[int] | torch.Generator | None = None, options: ExecOptions | None = None):
        super().__init__()
        if n_models < 1:
            raise ArchitectureError(f"n_models must be >= 1, got {n_models}")
        if n_classes is not None and n_classes < 1:
            raise ArchitectureError(f"n_classes must be >= 1 or None, got {n_classes}")
        if landmark_outputs is not None and (len(landmark_outputs) != n_models or min(landmark_outputs) < 1):
            raise ArchitectureError(
                f"landmark_outputs needs one positive size per model ({n_models}), got {landmark_outputs}")
        self.arch = ArchConfig(widths=widths, in_channels=in_channels, conv_kernel=conv_kernel,
                               pool_kernel=pool_kernel, pool_stride=pool_stride, pool_padding=pool_padding,
                               bn_eps=bn_eps, bn_momentum=bn_momentum,
                               head_hidden=head_hidden, head_activation=head_activation)
        self.n_models = n_models
        self.n_classes = n_classes
        self.landmark_outputs = None if landmark_outputs is None else [int(n) for n in landmark_outputs]
        f = self.arch.feature_dim
        self.extractor = FeatureExtractor.from_arch(self.arch, n_models=n_models, options=options)
        self.landmark_head: PackedDenseStack | None = (
            None if landmark_outputs is None else
            packed_landmark_head(n_models, self.landmark_outputs, head_hidden, head_activation, f))
        self.classifier: PackedDenseStack | None = (
            None if n_classes is None else
            packed_classifier_head(n_models, n_classes, head_hidden, head_activation, f))
        self.init_(seeds)

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_arch(cls, n_models: int, n_classes: int | None, landmark_outputs: list[int] | None,
                  arch: ArchConfig, seeds: Sequence[int] | torch.Generator | None = None, *,
                  options: ExecOptions | None = None) -> "PackedNetwork":
        return cls(n_models, n_classes, landmark_outputs, seeds=seeds, options=options, **arch.to_dict())

    @classmethod
    def from_subnetworks(cls, nets: Sequence[SubNetwork], *, options: ExecOptions | None = None) -> "PackedNetwork":
        """Pack plain networks (same architecture and heads; landmark sizes may differ), computing
        with `options` (the defaults when None)."""
        if not nets:
            raise ArchitectureError("from_subnetworks needs at least one SubNetwork")
        first = nets[0]
        for i, net in enumerate(nets):
            if net.arch != first.arch or net.n_classes != first.n_classes or \
                    (net.n_landmark_outputs is None) != (first.n_landmark_outputs is None):
                raise ArchitectureError(f"network {i} differs from network 0 in architecture or heads")
        sizes = None if first.n_landmark_outputs is None else [n.n_landmark_outputs for n in nets]
        packed = cls.from_arch(len(nets), first.n_classes, sizes, first.arch, seeds=[0] * len(nets),
                               options=options)
        ref = next(first.parameters())
        packed.to(device=ref.device, dtype=ref.dtype)
        for i, net in enumerate(nets):
            packed.load_model_state(i, net.state_dict(), strict_heads=True)
        return packed

    @torch.no_grad()
    def init_(self, seeds: Sequence[int] | torch.Generator | None = None) -> "PackedNetwork":
        """Initialise model m exactly as SubNetwork(..., seed=seeds[m]) initialises itself.

        A generator (or None: torch's global RNG) draws the M seeds first, as SubNetwork does.
        """
        if seeds is None or isinstance(seeds, torch.Generator):
            seeds = draw_seeds(self.n_models, seeds)
        if len(seeds) != self.n_models:
            raise ValueError(f"need {self.n_models} seeds, got {len(seeds)}")
        for m, seed in enumerate(seeds):
            gens = part_generators(int(seed))
            self.extractor.reset_model_(m, gens["extractor"])
            for head in HEADS:
                module = getattr(self, head)
                if module is not None:
                    module.reset_model_(m, gens[head])
        return self

    @property
    def options(self) -> ExecOptions:
        """How the network computes (models.options); fixed at construction."""
        return self.extractor.options

    # ---- forward ------------------------------------------------------------------------------

    @property
    def landmark_mask(self) -> torch.Tensor:
        """(M, Lmax) bool: True where model m has a real landmark output (padding is False)."""
        if self.landmark_head is None:
            raise ArchitectureError("this PackedNetwork has no landmark head")
        return self.landmark_head.out_mask

    def model_index(self, models: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """A checked 1-D index tensor (on the network's device) for `models=` arguments."""
        return _model_index(models, self.n_models).to(next(self.parameters()).device)

    def _extract(self, x: torch.Tensor, models: torch.Tensor | None = None,
                 return_maps: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(features (M, B, F), last block activation (B, M, F, h, w) or None unless return_maps);
        M = len(models) if given. Without maps the last block pools before its ReLU (cheaper)."""
        m, c = (self.n_models if models is None else len(models)), self.arch.in_channels
        if x.dim() != 5 or x.shape[1] != m or x.shape[2] not in (c, 1):
            raise ValueError(f"packed input must be (B, {m}, {c} or 1, H, W), got {tuple(x.shape)}")
        if models is not None and models.device != x.device:
            # (moving it here would copy it at every step, and each such copy waits for the GPU)
            raise ValueError(f"models= must be an index on the input's device ({x.device}), not {models.device}: "
                             f"PackedNetwork.model_index gives one")
        b = x.shape[0]
        flat = x.reshape(b, m * x.shape[2], x.shape[3], x.shape[4])
        if return_maps:
            feats, maps = self.extractor(flat, return_maps=True, model_axis=True, models=models)
        else:
            feats, maps = self.extractor(flat, models=models), None
        return feats.view(b, m, self.arch.feature_dim).transpose(0, 1), maps

    def _need(self, head: str) -> PackedDenseStack:
        module = getattr(self, head)
        if module is None:
            raise ArchitectureError(f"this PackedNetwork has no {head}")
        return module

    def features(self, x: torch.Tensor, return_maps: bool = False, models: torch.Tensor | None = None):
        """(B, M, 128); with return_maps also (B, M, 128, h, w), the last block's activation.

        models: a 1-D index tensor; x then holds only those models' batches, (B, len(models), ...),
        and only their weights (and BN statistics, in training) are used -- a pack whose other
        models stopped early computes the ones still training, nothing more.
        """
        feats, maps = self._extract(x, models, return_maps)
        feats = feats.transpose(0, 1)
        return (feats, maps) if return_maps else feats

    def classify(self, x: torch.Tensor, return_maps: bool = False):
        """(B, M, C) logits (softmax belongs to the loss / to inference)."""
        head = self._need("classifier")
        feats, maps = self._extract(x, return_maps=return_maps)
        logits = head(feats).transpose(0, 1)
        return (logits, maps) if return_maps else logits

    def landmarks(self, x: torch.Tensor, return_maps: bool = False):
        """(B, M, Lmax) coordinates; entries where landmark_mask is False are exactly 0."""
        head = self._need("landmark_head")
        feats, maps = self._extract(x, return_maps=return_maps)
        coords = head(feats).transpose(0, 1)
        return (coords, maps) if return_maps else coords

    def forward(self, x: torch.Tensor, output: str = "logits"):
        """Dispatch for torch.compile / hooks: output in {"features", "logits", "landmarks"}."""
        if output == "features":
            return self.features(x)
        if output == "logits":
            return self.classify(x)
        if output == "landmarks":
            return self.landmarks(x)
        raise ValueError(f"output must be features, logits or landmarks, got {output!r}")

    # ---- stages -------------------------------------------------------------------------------

    def trainable_parameters(self, stage: str) -> list[nn.Parameter]:
        return stages.trainable_parameters(self, stage)

    def set_stage_mode(self, stage: str, frozen_bn: bool = False) -> None:
        stages.set_stage_mode(self, stage, frozen_bn)

    # ---- per-model slices ---------------------------------------------------------------------

    def model_views(self) -> dict[str, torch.Tensor]:
        """name -> (M, ...) view of every parameter and persistent buffer, num_batches_tracked excluded.

        Views share storage with the network (detached: writing into them needs no torch.no_grad).
        """
        return {name: model_view(t, self.n_models) for name, t in self.state_dict().items()
                if not name.endswith(SHARED_BUFFER_SUFFIX)}

    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of all models' weights and BN statistics, as (M, ...) tensors on the same device."""
        return {name: v.clone() for name, v in self.model_views().items()}

    @torch.no_grad()
    def restore_models_(self, snapshot: dict[str, torch.Tensor], models: Sequence[int] | torch.Tensor) -> None:
        """Write the chosen models' slices of `snapshot` back (e.g. the best epoch's weights of a
        model that just stopped). A training step uses frozen_slices instead."""
        _copy_models(self.model_views(), snapshot, models, self.n_models)

    @torch.no_grad()
    def capture_models_(self, snapshot: dict[str, torch.Tensor], models: Sequence[int] | torch.Tensor) -> None:
        """Copy the chosen models' current slices INTO `snapshot` (e.g. models that just improved)."""
        _copy_models(snapshot, self.model_views(), models, self.n_models)

    def frozen_slices(self, snapshot: dict[str, torch.Tensor], mask: torch.Tensor) -> FrozenSlices:
        """The write-back that holds the models where `mask` is True at their slices of `snapshot`.

        mask: an (M,) boolean tensor on the network's device, kept (not copied): setting more of
        it in place holds more models. snapshot: PackedNetwork.snapshot()'s tensors on the same
        device, also kept: a held model's slices must not change in it while it is held."""
        views = self.model_views()
        device = next(iter(views.values())).device
        if (not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != (self.n_models,)
                or mask.device != device):
            got = (f"{tuple(mask.shape)} {mask.dtype} on {mask.device}" if isinstance(mask, torch.Tensor)
                   else type(mask).__name__)
            raise ValueError(f"the frozen-model mask must be a ({self.n_models},) bool tensor on {device} "
                             f"(changed in place as models stop), got {got}")
        off = [name for name, view in views.items()
               if snapshot[name].shape != view.shape or snapshot[name].device != view.device]
        if off:
            raise ValueError(f"snapshot tensors {off[:3]} do not match the network's (shape, device)")
        return FrozenSlices(tuple(views.values()), tuple(snapshot[name] for name in views),
                            tuple(mask.view(-1, *[1] * (v.dim() - 1)) for v in views.values()), mask)

    # ---- pack / unpack ------------------------------------------------------------------------

    def _check_slot(self, i: int) -> None:
        if not 0 <= i < self.n_models:
            raise IndexError(f"model index {i} out of range for {self.n_models} models")

    @torch.no_grad()
    def model_state(self, i: int) -> dict[str, torch.Tensor]:
        """Model i as a plain SubNetwork state dict (contiguous copies, on this network's device)."""
        self._check_slot(i)
        out: dict[str, torch.Tensor] = {}
        for name, t in self.extractor.state_dict().items():
            key = f"extractor.{name}"
            if name.endswith(SHARED_BUFFER_SUFFIX):
                out[key] = t.clone()
            else:
                out[key] = model_view(t, self.n_models)[i].clone(memory_format=torch.contiguous_format)
        for head in HEADS:
            module = getattr(self, head)
            if module is None:
                continue
            for j in range(1, module.n_layers + 1):
                out[f"{head}.fc{j}.weight"], out[f"{head}.fc{j}.bias"] = module.plain_layer(j, i)
        return out

    def subnetwork(self, i: int) -> SubNetwork:
        """Model i as a plain SubNetwork (same device and options), e.g. for checkpoints or
        per-model Grad-CAM."""
        sizes = self.landmark_outputs
        net = SubNetwork.from_arch(self.n_classes, None if sizes is None else sizes[i], self.arch, seed=0,
                                   options=self.options)
        ref = next(self.parameters())
        net.to(device=ref.device, dtype=ref.dtype)
        net.load_state_dict(self.model_state(i), strict=True)
        return net

    @torch.no_grad()
    def load_model_state(self, i: int, state_dict: dict[str, torch.Tensor],
                         strict_heads: bool = True) -> dict[str, list[str]]:
        """Load a plain SubNetwork state dict into slot i.

        The extractor must be complete. Heads: a head present in both is loaded (its sizes must
        match); with strict_heads=False a head missing from `state_dict` keeps slot i's current
        weights and a head this network lacks is ignored, so a stage-1 checkpoint (extractor +
        landmark head) can seed a classification pack. Returns {"loaded", "missing", "ignored"} heads.
        """
        self._check_slot(i)
        prefixes = ("extractor.",) + tuple(f"{h}." for h in HEADS)
        unknown = sorted(k for k in state_dict if not k.startswith(prefixes))
        if unknown:
            raise StateDictError(f"slot {i}: keys that belong to no part of a SubNetwork: {unknown[:5]}")

        ext = self.extractor.state_dict()
        missing = sorted(f"extractor.{k}" for k in ext if f"extractor.{k}" not in state_dict)
        extra = sorted(k for k in state_dict if k.startswith("extractor.") and k[len("extractor."):] not in ext)
        if missing or extra:
            raise StateDictError(f"slot {i}: extractor keys missing {missing[:5]} / unexpected {extra[:5]}")
        for name, t in ext.items():
            if name.endswith(SHARED_BUFFER_SUFFIX):
                continue   # shared bookkeeping (see module docstring)
            self._copy_into(model_view(t, self.n_models)[i], state_dict[f"extractor.{name}"], f"extractor.{name}", i)

        report: dict[str, list[str]] = {"loaded": [], "missing": [], "ignored": []}
        for head in HEADS:
            module = getattr(self, head)
            present = any(k.startswith(f"{head}.") for k in state_dict)
            if module is None and present:
                if strict_heads:
                    raise StateDictError(f"slot {i}: state dict has a {head} but this network has none")
                report["ignored"].append(head)
            elif module is not None and not present:
                if strict_heads:
                    raise StateDictError(f"slot {i}: state dict has no {head} (pass strict_heads=False to keep "
                                         f"the current one)")
                report["missing"].append(head)
            elif module is not None:
                self._load_head(i, head, module, state_dict)
                report["loaded"].append(head)
        return report

    def _load_head(self, i: int, head: str, module: PackedDenseStack, state_dict: dict) -> None:
        expected = {f"{head}.fc{j}.{p}" for j in range(1, module.n_layers + 1) for p in ("weight", "bias")}
        if module.out_scale is not None:
            raise StateDictError(f"slot {i}: {head} reads its outputs in a frame of its own; a plain state "
                                 "dict (crop units) must be loaded before the frame is set")
        got = {k for k in state_dict if k.startswith(f"{head}.")}
        if got != expected:
            raise StateDictError(f"slot {i}: {head} keys {sorted(got)} do not match {sorted(expected)}")
        for j, layer in enumerate(module.layers(), start=1):
            self._copy_into(layer.plain_weight(i), state_dict[f"{head}.fc{j}.weight"], f"{head}.fc{j}.weight", i)
            self._copy_into(layer.plain_bias(i), state_dict[f"{head}.fc{j}.bias"], f"{head}.fc{j}.bias", i)

    @staticmethod
    def _copy_into(dst: torch.Tensor, src: torch.Tensor, key: str, i: int) -> None:
        if tuple(dst.shape) != tuple(src.shape):
            raise StateDictError(f"slot {i}: {key} has shape {tuple(src.shape)}, expected {tuple(dst.shape)}")
        dst.copy_(src)
