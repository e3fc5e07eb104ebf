"""Strict checking of a resolved config against the composed defaults, the one source of every key.

The reference is configs/run.yaml <- configs/hardware/<default profile>.yaml <- configs/paper.yaml
(orchestrator.config composes it). A key it does not have is refused with the nearest known one
("did you mean train.patience?"); a key it has but the config lacks, a value of the wrong kind
(text for a number, a number for a switch) or out of its range is refused naming the key. All of
it happens in load_config, before a run writes anything: a typo would otherwise retrain everything
to no effect, and a bad value fail deep inside a pack after plan.json says "running"; and the code
can read every key without a fallback default of its own.

Free-form subtrees: the data sets a config describes (`datasets.<name>`, checked key by key
against DATASET_KEYS), their generators (`synthetic.<name>`) and the preprocessing overrides of
generated faces (`synthetic_prep`).
"""
from __future__ import annotations

import difflib
from typing import Any

# keys whose value may be of several kinds (the reference's null ones among them)
KINDS: dict[str, tuple[type, ...]] = {
    "train.steps_per_epoch": (int, type(None)), "train.patience": (int, type(None)),
    "train.twin_selection": (str, type(None)), "model.pool_padding": (str, int),
    "train.compile": (str, bool), "storage": (str,),
}
# the keys a data set may set; `options`, `prep` and `epochs` are checked one level down
DATASET_KEYS = {"layout": str, "protocol": str, "folds": int, "eval_on": (list, type(None)),
                "options": dict, "prep": dict, "epochs": dict}
FREE_SECTIONS = ("synthetic", "synthetic_prep")
# (key, lowest allowed, whether the lowest is excluded)
MINIMUM: dict[str, tuple[float, bool]] = {
    "members": (1, False), "seed": (0, False), "image_size": (24, False), "epochs_scale": (0, True),
    "eval_every": (1, False), "train.batch_size": (1, False), "train.pack_size": (1, False),
    "train.pack_size_cpu": (1, False), "train.cpus_per_pack": (0, True), "train.checkpoint_every": (0, False),
    "train.checkpoint_seconds": (0, False), "train.max_retries": (0, False), "train.min_delta": (0, False),
    "train.val_subject_fraction": (0, False), "prep.crop_size": (16, False), "prep.clahe_tile": (1, False),
}


class ConfigKeyError(ValueError):
    """A config key or value that the composed defaults do not allow."""


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _kind(value: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text", list: "a list",
            dict: "a mapping", type(None): "null"}.get(type(value), type(value).__name__)


def _type_ok(value: Any, wants: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in wants
    if isinstance(value, int) and float in wants:
        return True
    return isinstance(value, wants)


def _near(key: str, known: list[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def check_against(cfg: dict, reference: dict) -> None:
    """ConfigKeyError for the first key or value of `cfg` that `reference` (the composed
    defaults) rules out, or the first key of `reference` that `cfg` lacks."""
    known = _flatten({k: v for k, v in reference.items() if k not in ("datasets", *FREE_SECTIONS)})
    names = sorted(known) + ["datasets", *FREE_SECTIONS]
    ours = _flatten({k: v for k, v in cfg.items() if k not in ("datasets", *FREE_SECTIONS)})
    for key, value in ours.items():
        if key not in known:
            parent = next((p for p in sorted(known) if key.startswith(p + ".")), None)
            if any(k.startswith(key + ".") for k in known):
                raise ConfigKeyError(f"{key} must be a mapping, not {value!r}")
            if parent is None or not isinstance(known[parent], dict):
                raise ConfigKeyError(f"unknown config key {key}{_near(key, names)}")
            continue
        wants = KINDS.get(key, (type(known[key]),))
        if not _type_ok(value, wants):
            want = " or ".join(_kind(t()) if t is not type(None) else "null" for t in wants)
            raise ConfigKeyError(f"{key} must be {want}, not {value!r}")
        bound = MINIMUM.get(key)
        if bound is not None and value is not None:
            low, open_ = bound
            if value < low or (open_ and value == low):
                raise ConfigKeyError(f"{key} must be {'>' if open_ else '>='} {low:g}, not {value!r}")
    for key in known:
        if key not in ours and not any(k.startswith(key + ".") for k in ours):
            raise ConfigKeyError(f"config lacks {key} (configs/run.yaml, hardware/ and paper.yaml define every key)")
    for section in ("datasets", *FREE_SECTIONS):
        if not isinstance(cfg.get(section) or {}, dict):
            raise ConfigKeyError(f"{section} must be a mapping, not {cfg[section]!r}")
    for name, spec in (cfg.get("datasets") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigKeyError(f"datasets.{name} must be a mapping, not {spec!r}")
        for key, value in spec.items():
            if key not in DATASET_KEYS:
                raise ConfigKeyError(f"unknown config key datasets.{name}.{key}"
                                     f"{_near(key, sorted(DATASET_KEYS)).replace('mean ', f'mean datasets.{name}.')}")
            want = DATASET_KEYS[key]
            if not isinstance(value, want) or isinstance(value, bool):
                raise ConfigKeyError(f"datasets.{name}.{key} must be {_kind(want() if not isinstance(want, tuple) else [])}, "
                                     f"not {value!r}")
        for stage, epochs in (spec.get("epochs") or {}).items():
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ConfigKeyError(f"datasets.{name}.epochs.{stage} must be a whole number >= 1, not {epochs!r}")
        for key, value in (spec.get("prep") or {}).items():
            if f"prep.{key}" not in known:
                raise ConfigKeyError(f"unknown config key datasets.{name}.prep.{key}"
                                     f"{_near('prep.' + key, names).replace('mean ', f'mean datasets.{name}.')}")


__all__ = ["ConfigKeyError", "check_against"]
