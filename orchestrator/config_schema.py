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
import math
from typing import Any

from partfer.data_prep.settings import CROP_SIZE_MAX, CROP_SIZE_MIN
from partfer.models.config import IMAGE_SIZE_MAX, IMAGE_SIZE_MIN, MAX_HEAD_HIDDEN, MAX_POOL
from partfer.orchestrator.messages import shown

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
# the settings of one generated data set (`synthetic.<name>`: data_prep.synth.synthesize's
# arguments, whose ranges data_prep.synth.check_request knows)
SYNTHETIC_KEYS: dict[str, tuple[type, ...]] = {"subjects": (int,), "per_class": (int,), "frames": (int,),
                                               "seed": (int,), "size": (int,), "classes": (list,)}
# (key, lowest allowed, whether the lowest is excluded); `prep.*` also bounds each data set's
# `datasets.<name>.prep` and `synthetic_prep`
MINIMUM: dict[str, tuple[float, bool]] = {
    "members": (1, False), "seed": (0, False), "image_size": (IMAGE_SIZE_MIN, False), "epochs_scale": (0, True),
    "eval_every": (1, False), "train.batch_size": (1, False), "train.pack_size": (1, False),
    "train.pack_size_cpu": (1, False), "train.cpus_per_pack": (0, True), "train.checkpoint_every": (0, False),
    "train.checkpoint_seconds": (0, False), "train.max_retries": (0, False), "train.min_delta": (0, False),
    "train.val_subject_fraction": (0, False), "train.gpus_per_pack": (0, True), "train.gpus_per_worker": (0, True),
    "train.lr.baseline": (0, True), "train.lr.landmark": (0, True), "train.lr.head": (0, True),
    "train.lr.finetune": (0, True), "train.adam.beta1": (0, False), "train.adam.beta2": (0, False),
    "train.adam.eps": (0, True), "train.augment.rotation_deg": (0, False),
    "prep.crop_size": (CROP_SIZE_MIN, False), "prep.clahe_tile": (1, False), "prep.clahe_clip": (0, True),
    "prep.ssd_confidence": (0, True), "prep.box_margin": (-1, True),
    "model.pool_kernel": (1, False), "model.pool_stride": (1, False), "model.bn_eps": (0, True),
    "model.bn_momentum": (0, True), "model.head_hidden": (1, False),
}
# (key, highest allowed, whether the highest is excluded): sizes bounded so that no value can make
# a run allocate without limit (models.config explains the network's bounds)
MAXIMUM: dict[str, tuple[float, bool]] = {
    "image_size": (IMAGE_SIZE_MAX, False), "prep.crop_size": (CROP_SIZE_MAX, False),
    "train.adam.beta1": (1, True), "train.adam.beta2": (1, True), "train.gpus_per_pack": (1, False),
    "train.val_subject_fraction": (1, True), "train.augment.rotation_deg": (180, False),
    "prep.ssd_confidence": (1, False),
    "model.pool_kernel": (MAX_POOL, False), "model.pool_stride": (MAX_POOL, False),
    "model.bn_momentum": (1, False), "model.head_hidden": (MAX_HEAD_HIDDEN, False),
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


def _check_value(name: str, key: str, value: Any, known: dict[str, Any]) -> None:
    """ConfigKeyError unless `value` is of the kind and in the range of reference key `key`
    (`name`: how the message calls it)."""
    wants = KINDS.get(key, (type(known[key]),))
    if not _type_ok(value, wants):
        want = " or ".join(_kind(t()) if t is not type(None) else "null" for t in wants)
        raise ConfigKeyError(f"{name} must be {want}, not {shown(value)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigKeyError(f"{name} must be a finite number, not {shown(value)}")
    low = MINIMUM.get(key)
    if low is not None and value is not None:
        bound, open_ = low
        if value < bound or (open_ and value == bound):
            raise ConfigKeyError(f"{name} must be {'>' if open_ else '>='} {bound:g}, not {shown(value)}")
    high = MAXIMUM.get(key)
    if high is not None and value is not None:
        bound, open_ = high
        if value > bound or (open_ and value == bound):
            raise ConfigKeyError(f"{name} must be {'<' if open_ else '<='} {bound:g}, not {shown(value)}")


def _check_prep(where: str, prep: Any, known: dict[str, Any], names: list[str]) -> None:
    """A `prep` override (a data set's, synthetic_prep): known prep keys, each of its kind and range."""
    if not isinstance(prep, dict):
        raise ConfigKeyError(f"{where} must be a mapping, not {shown(prep)}")
    for key, value in prep.items():
        if f"prep.{key}" not in known:
            raise ConfigKeyError(f"unknown config key {where}.{key}"
                                 f"{_near('prep.' + str(key), names).replace('mean prep.', f'mean {where}.')}")
        _check_value(f"{where}.{key}", f"prep.{key}", value, known)


def _check_synthetic(cfg: dict) -> None:
    """`synthetic.<name>`: a data set the config describes, generated with known settings of their kind."""
    for name, spec in (cfg.get("synthetic") or {}).items():
        if name not in (cfg.get("datasets") or {}):
            raise ConfigKeyError(f"synthetic.{name}: no data set {name!r} is described under datasets "
                                 f"(known: {', '.join(sorted(cfg.get('datasets') or {}))})")
        if not isinstance(spec, dict):
            raise ConfigKeyError(f"synthetic.{name} must be a mapping, not {shown(spec)}")
        for key, value in spec.items():
            if key not in SYNTHETIC_KEYS:
                raise ConfigKeyError(f"unknown config key synthetic.{name}.{key} (known: {', '.join(SYNTHETIC_KEYS)})")
            if not _type_ok(value, SYNTHETIC_KEYS[key]):
                want = "a list of class names" if key == "classes" else "a whole number"
                raise ConfigKeyError(f"synthetic.{name}.{key} must be {want}, not {shown(value)}")


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
                raise ConfigKeyError(f"{key} must be a mapping, not {shown(value)}")
            if parent is None or not isinstance(known[parent], dict):
                raise ConfigKeyError(f"unknown config key {key}{_near(key, names)}")
            continue
        _check_value(key, key, value, known)
    for key in known:
        if key not in ours and not any(k.startswith(key + ".") for k in ours):
            raise ConfigKeyError(f"config lacks {key} (configs/run.yaml, hardware/ and paper.yaml define every key)")
    for section in ("datasets", *FREE_SECTIONS):
        if not isinstance(cfg.get(section) or {}, dict):
            raise ConfigKeyError(f"{section} must be a mapping, not {shown(cfg[section])}")
    for name, spec in (cfg.get("datasets") or {}).items():
        if not isinstance(spec, dict):
            raise ConfigKeyError(f"datasets.{name} must be a mapping, not {shown(spec)}")
        for key, value in spec.items():
            if key not in DATASET_KEYS:
                raise ConfigKeyError(f"unknown config key datasets.{name}.{key}"
                                     f"{_near(key, sorted(DATASET_KEYS)).replace('mean ', f'mean datasets.{name}.')}")
            want = DATASET_KEYS[key]
            if not isinstance(value, want) or isinstance(value, bool):
                raise ConfigKeyError(f"datasets.{name}.{key} must be {_kind(want() if not isinstance(want, tuple) else [])}, "
                                     f"not {shown(value)}")
        for stage, epochs in (spec.get("epochs") or {}).items():
            if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
                raise ConfigKeyError(f"datasets.{name}.epochs.{stage} must be a whole number >= 1, not {shown(epochs)}")
        folds = spec.get("folds")
        if folds is not None and folds < 2:
            # one fold would test on every subject it trained on (and has no training rows at all)
            raise ConfigKeyError(f"datasets.{name}.folds must be >= 2 (k-fold cross-validation), not {folds}")
        if not all(isinstance(other, str) for other in spec.get("eval_on") or []):
            raise ConfigKeyError(f"datasets.{name}.eval_on must list data set names, not {shown(spec['eval_on'])}")
        _check_prep(f"datasets.{name}.prep", spec.get("prep") or {}, known, names)
    _check_prep("synthetic_prep", cfg.get("synthetic_prep") or {}, known, names)
    _check_synthetic(cfg)


__all__ = ["ConfigKeyError", "check_against"]
