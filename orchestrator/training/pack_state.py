"""Whether a pack's resumable state (state.pt) fits the pack about to resume from it.

A state that loads (orchestrator.storage.store.load_state: weights-only, a dict) may still be of
another pack, another version or someone's hand: a missing key or a tensor of another shape would
fail the pack with a traceback on every re-run. Every key is checked here against the live pack
(its model keys, network, optimizer, best-weight snapshot and generator) before any of it is used;
an unusable state is named in one log line, removed, and the pack starts over, like one that does
not load (it is only a cache).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from partfer.orchestrator.storage.store import load_state, remove_file

# what run_pack saves; `computed` and `last_val` came later, so older states may lack them
REQUIRED = ("keys", "net", "opt", "best", "active", "best_loss", "best_epoch", "last_epoch", "history",
            "epoch", "gen")
OPTIONAL = ("computed", "last_val")


@dataclass
class PackState:
    """What a pack's training carries from one epoch to the next besides its network, optimizer,
    best weights and generator; with those, what state.pt holds (saved / from_saved)."""
    active: torch.Tensor              # (M,) bool: still training
    best_loss: torch.Tensor           # (M,) float32: the monitored loss at each model's kept epoch
    best_epoch: torch.Tensor          # (M,) int64: that epoch (0: none yet)
    last_epoch: torch.Tensor          # (M,) int64: the last epoch each model trained
    history: list[list[dict]]         # per model, one row per epoch it trained
    epoch: int                        # epochs done
    computed: torch.Tensor            # (k,) int64: the models the forward pass computes (the active ones among them)
    last_val: dict[str, torch.Tensor]  # "loss", "acc": (M,) each model's last validation figures

    @classmethod
    def start(cls, n_models: int) -> "PackState":
        """A pack of n_models before its first epoch."""
        return cls(active=torch.ones(n_models, dtype=torch.bool), best_loss=torch.full((n_models,), float("inf")),
                   best_epoch=torch.zeros(n_models, dtype=torch.int64),
                   last_epoch=torch.zeros(n_models, dtype=torch.int64), history=[[] for _ in range(n_models)],
                   epoch=0, computed=torch.arange(n_models),
                   last_val={"loss": torch.full((n_models,), float("nan")),
                             "acc": torch.full((n_models,), float("nan"))})

    @classmethod
    def from_saved(cls, saved: dict, fresh: "PackState") -> "PackState":
        """The record a state.pt holds (validate_state passed it); an older state's missing
        OPTIONAL keys take fresh's values."""
        return cls(**{f.name: saved[f.name] if f.name in saved else getattr(fresh, f.name)
                      for f in dataclasses.fields(cls)})

    def saved(self, keys: list[str], net: torch.nn.Module, opt: torch.optim.Optimizer,
              best: dict[str, torch.Tensor], gen: torch.Generator) -> dict:
        """state.pt's content: the pack's model keys, network, optimizer, best weights and
        generator with this record (REQUIRED and OPTIONAL name every key)."""
        return {"keys": keys, "net": net.state_dict(), "opt": opt.state_dict(), "best": best,
                "active": self.active, "best_loss": self.best_loss, "best_epoch": self.best_epoch,
                "last_epoch": self.last_epoch, "history": self.history, "epoch": self.epoch, "gen": gen.get_state(),
                "computed": self.computed, "last_val": self.last_val}


def expected_state(keys: list[str], net: torch.nn.Module, opt: torch.optim.Optimizer,
                   best: dict[str, torch.Tensor], gen: torch.Generator, max_epochs: int) -> dict:
    """What a state of this pack must hold: shapes and kinds taken from the live objects."""
    return {
        "keys": list(keys),
        "net": {name: (tuple(t.shape), t.dtype) for name, t in net.state_dict().items()},
        "best": {name: (tuple(t.shape), t.dtype) for name, t in best.items()},
        "opt_groups": [len(group["params"]) for group in opt.param_groups],
        "opt_shapes": [tuple(p.shape) for group in opt.param_groups for p in group["params"]],
        "gen_bytes": gen.get_state().numel(),
        "max_epochs": int(max_epochs),
    }


def _tensor(value, shape: tuple, dtype: torch.dtype | None = None) -> bool:
    return (isinstance(value, torch.Tensor) and tuple(value.shape) == tuple(shape)
            and (dtype is None or value.dtype == dtype))


def _tensors_like(saved, expected: dict[str, tuple], what: str) -> str | None:
    if not isinstance(saved, dict):
        return f"{what} is a {type(saved).__name__}, not a mapping of tensors"
    if set(saved) != set(expected):
        extra, lacking = sorted(map(str, set(saved) - set(expected))), sorted(set(expected) - set(saved))
        return f"{what} does not hold this network's tensors (lacks {lacking[:3]}, extra {extra[:3]})"
    for name, (shape, dtype) in expected.items():
        if not _tensor(saved[name], shape, dtype):
            got = saved[name]
            seen = f"{got.dtype} {tuple(got.shape)}" if isinstance(got, torch.Tensor) else type(got).__name__
            return f"{what}[{name!r}] is {seen}, not {dtype} {shape}"
    return None


def _optimizer(saved, expected: dict) -> str | None:
    """The optimizer state Optimizer.load_state_dict would accept: the same groups and parameter
    counts, and per parameter only scalars (the step) or tensors of its shape (Adam's moments)."""
    if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
            or not isinstance(saved.get("param_groups"), list):
        return "opt is not an optimizer state (state and param_groups)"
    groups = saved["param_groups"]
    if not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups) \
            or [len(g["params"]) for g in groups] != expected["opt_groups"]:
        return "opt's parameter groups do not match this pack's optimizer"
    ids = [i for g in groups for i in g["params"]]
    shape_of = dict(zip(ids, expected["opt_shapes"]))
    for index, state in saved["state"].items():
        if index not in shape_of or not isinstance(state, dict):
            return f"opt holds state of an unknown parameter {index!r}"
        for key, value in state.items():
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
                isinstance(value, torch.Tensor) and tuple(value.shape) in ((), shape_of[index]))
            if not ok:
                return f"opt's {key!r} of parameter {index} does not fit its shape {shape_of[index]}"
    return None


def validate_state(saved: dict, expected: dict) -> str | None:
    """Why `saved` cannot resume the pack `expected` describes (expected_state), or None."""
    lacking = [key for key in REQUIRED if key not in saved]
    if lacking:
        return f"lacks {', '.join(lacking)}"
    if not isinstance(saved["keys"], list) or saved["keys"] != expected["keys"]:
        return "its model keys are not this pack's"
    n = len(expected["keys"])
    for check in (lambda: _tensors_like(saved["net"], expected["net"], "net"),
                  lambda: _tensors_like(saved["best"], expected["best"], "best"),
                  lambda: _optimizer(saved["opt"], expected)):
        why = check()
        if why:
            return why
    for key, dtype in (("active", torch.bool), ("best_loss", torch.float32), ("best_epoch", torch.int64),
                       ("last_epoch", torch.int64)):
        if not _tensor(saved[key], (n,), dtype):
            return f"{key} is not a {dtype} tensor of {n} values (one per model)"
    epoch = saved["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= expected["max_epochs"]:
        return f"epoch {epoch!r} is not a whole number in [0, {expected['max_epochs']}]"
    for key in ("best_epoch", "last_epoch"):
        if saved[key].numel() and not (0 <= int(saved[key].min()) and int(saved[key].max()) <= epoch):
            return f"{key} holds epochs outside [0, {epoch}]"
    history = saved["history"]
    if not isinstance(history, list) or len(history) != n or not all(
            isinstance(rows, list) and len(rows) <= epoch and all(isinstance(r, dict) for r in rows) for rows in history):
        return f"history is not one list of at most {epoch} epoch rows per model ({n} models)"
    gen = saved["gen"]
    if not _tensor(gen, (expected["gen_bytes"],), torch.uint8):
        return f"gen is not a generator state (a ByteTensor of {expected['gen_bytes']} bytes)"
    computed = saved.get("computed")
    if computed is not None:
        if not (isinstance(computed, torch.Tensor) and computed.dtype == torch.int64 and computed.dim() == 1
                and 0 < computed.numel() <= n and computed.unique().numel() == computed.numel()
                and int(computed.min()) >= 0 and int(computed.max()) < n):
            return f"computed is not a set of model indices in [0, {n})"
        if not set(saved["active"].nonzero().flatten().tolist()) <= set(computed.tolist()):
            return "computed leaves out models still training"
    last_val = saved.get("last_val")
    if last_val is not None and not (isinstance(last_val, dict) and set(last_val) == {"loss", "acc"}
                                     and all(_tensor(v, (n,)) and v.is_floating_point() for v in last_val.values())):
        return f"last_val is not a loss and an accuracy per model ({n} values each)"
    return None


def resumable_state(location: str, log: Callable[[str], None], expected: dict) -> dict | None:
    """The pack's saved state when it can resume this pack, else None (start over): one that does
    not load is handled by load_state, one that does not fit is named in the log and removed here."""
    saved = load_state(location, log)
    if saved is None:
        return None
    why = validate_state(saved, expected)
    if why is None:
        return saved
    log(f"resumable state {location} cannot be used ({why}); removed, the pack starts over")
    remove_file(location)
    return None


__all__ = ["OPTIONAL", "PackState", "REQUIRED", "expected_state", "resumable_state", "validate_state"]
