"""YAML configuration: `include` chains, command-line overrides, validation, the resolved copy.

A config is a plain nested dict. `load_config` resolves includes, applies overrides given as
dotted keys (`train.patience=5`), and checks the few things that would otherwise fail deep
inside a run (unknown networks or parts, missing epoch caps).
"""
from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from partfer.data_prep.ibug68 import PARTS
from partfer.orchestrator.config_schema import ConfigKeyError, check_against

# the configs shipped inside the package (the checkout's configs/ folder in an editable install)
CONFIG_DIR = Path(str(resources.files("partfer").joinpath("configs")))
STAGES = ("baseline", "landmark", "head", "finetune")
# train.selection: which epoch's weights a stage keeps (configs/paper.yaml explains each)
SELECTIONS = ("evaluated_fold", "heldout_subjects", "last")
TRANSFER_BN = ("frozen", "trainable")
TRANSFER_STAGES = ("landmark", "head", "finetune")
NETWORKS = ("baseline", "ftl", "el")
# how a run trains its packs: Ray tasks, this process, or Ray Train runs (orchestrator/execution/train_executor.py)
EXECUTORS = ("ray", "inline", "train")


class ConfigError(ValueError):
    """A configuration that cannot describe a run."""


# Sections a including config replaces whole instead of merging into: a config's generated data
# sets are its own (demo.yaml's one small JAFFE set must not inherit paper.yaml's three big ones).
REPLACED_SECTIONS = {"synthetic"}


def _merge(base: dict, over: dict, top: bool = True) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if top and key in REPLACED_SECTIONS:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value, top=False)
        else:
            out[key] = copy.deepcopy(value)
    return out


def find_config(name_or_path: str) -> Path:
    """A path as given, else a file of that name in the project's configs/ folder."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name_or_path, CONFIG_DIR / f"{name_or_path}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config not found: {name_or_path} (looked in . and {CONFIG_DIR})")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"include cycle through {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    include = raw.pop("include", None)
    if include is None:
        return raw
    parent_path = (path.parent / include) if not Path(include).is_absolute() else Path(include)
    if not parent_path.is_file():
        parent_path = find_config(include)
    return _merge(_read(parent_path, seen + (path,)), raw)


def parse_value(text: str) -> Any:
    """A command-line value as YAML would read it (numbers, booleans, lists, null)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)          # YAML 1.1 reads "1e-5" (no dot) as a string
        except ValueError:
            pass
    return value


def set_dotted(cfg: dict, dotted: str, value: Any) -> None:
    node = cfg
    keys = dotted.split(".")
    for key in keys[:-1]:
        nxt = node.setdefault(key, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a mapping")
        node = nxt
    node[keys[-1]] = value


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> dict:
    cfg = _read(find_config(name_or_path))
    for dotted, value in (overrides or {}).items():
        set_dotted(cfg, dotted, value)
    validate(cfg)
    return cfg


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")

# train.* switches of the custom kernels on CUDA, and their defaults when a config leaves them out
KERNEL_SWITCHES = {"fused_bn": True, "fused_grey_conv": False, "fused_augment": True, "cuda_graphs": False,
                   "triton_conv": False}


def compile_mode_of(cfg: dict) -> str:
    """train.compile as a mode name (YAML reads a bare `off` as false, `on` as true)."""
    value = cfg.get("train", {}).get("compile", "off")
    if value is False or value is None:
        return "off"
    if value is True:
        return "default"
    return str(value)


@functools.lru_cache(maxsize=1)
def _paper_reference() -> dict:
    return _read(CONFIG_DIR / "paper.yaml")


def validate(cfg: dict) -> None:
    try:
        check_against(cfg, copy.deepcopy(_paper_reference()))
    except ConfigKeyError as err:
        raise ConfigError(str(err)) from None
    for key in ("networks", "members", "parts", "image_size", "epochs_scale", "train", "model",
                "prep", "datasets"):
        if key not in cfg:
            raise ConfigError(f"config is missing `{key}`")
    if not cfg["networks"]:
        raise ConfigError(f"networks is empty: name at least one of {list(NETWORKS)}")
    if "el" in cfg["networks"] and not cfg["parts"]:
        raise ConfigError("parts is empty: EL needs at least one part")
    bad = [n for n in cfg["networks"] if n not in NETWORKS]
    if bad:
        raise ConfigError(f"unknown network(s) {bad}; choose from {list(NETWORKS)}")
    bad = [p for p in cfg["parts"] if p not in PARTS]
    if bad:
        raise ConfigError(f"unknown part(s) {bad}; choose from {sorted(PARTS)}")
    if cfg["epochs_scale"] <= 0:
        raise ConfigError("epochs_scale must be > 0")
    if int(cfg["image_size"]) < 24:
        raise ConfigError("image_size must be at least 24 (four 3x3/2 poolings)")
    compile_mode = compile_mode_of(cfg)
    if compile_mode not in COMPILE_MODES:
        raise ConfigError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, not {compile_mode!r}")
    for key, default in KERNEL_SWITCHES.items():
        if not isinstance(cfg["train"].get(key, default), bool):
            raise ConfigError(f"train.{key} must be true or false, not {cfg['train'][key]!r}")
    if cfg["train"].get("cuda_graphs", False) and compile_mode != "off":
        raise ConfigError("train.cuda_graphs and train.compile both change how the step runs; "
                          "choose one (compile's reduce-overhead mode captures graphs of its own)")
    _validate_recipe(cfg["train"])
    gpus = float(cfg["train"].get("gpus_per_pack", 1.0))
    if not 0 < gpus <= 1:
        raise ConfigError(f"train.gpus_per_pack must be in (0, 1] (a pack runs on one GPU), not {gpus}")
    if cfg.get("executor") not in EXECUTORS:
        raise ConfigError(f"executor must be one of {', '.join(EXECUTORS)}, not {cfg.get('executor')!r}")
    workers = cfg["train"].get("workers_per_run")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"train.workers_per_run must be 0 (the planner chooses) or a whole number >= 1, not {workers!r}")
    for name, ds in cfg["datasets"].items():
        missing = [s for s in STAGES if s not in ds.get("epochs", {})]
        if missing:
            raise ConfigError(f"datasets.{name}.epochs lacks {missing}")
        if ds.get("protocol") not in ("loso", "kfold", "holdout"):
            raise ConfigError(f"datasets.{name}.protocol must be loso, kfold or holdout")


def _validate_recipe(tr: dict) -> None:
    """The training recipe's knobs (selection, stopping, epoch length, BN in transfer)."""
    if tr.get("selection") not in SELECTIONS:
        raise ConfigError(f"train.selection must be one of {', '.join(SELECTIONS)}, not {tr.get('selection')!r}")
    twin = tr.get("twin_selection")
    if twin is not None and twin not in SELECTIONS:
        raise ConfigError(f"train.twin_selection must be null or one of {', '.join(SELECTIONS)}, not {twin!r}")
    if tr.get("transfer_bn", "frozen") not in TRANSFER_BN:
        raise ConfigError(f"train.transfer_bn must be frozen or trainable, not {tr.get('transfer_bn')!r}")
    steps = tr.get("steps_per_epoch")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"train.steps_per_epoch must be a whole number >= 1 or null, not {steps!r}")
    patience = tr.get("patience")
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"train.patience must be a whole number of epochs >= 1 or null, not {patience!r}")
    aug = tr.get("augment") or {}
    known_aug = ("hflip", "rotation_deg", "shift", "shear_deg")
    unknown = sorted(set(aug) - set(known_aug))
    if unknown:
        raise ConfigError(f"unknown train.augment setting(s) {unknown}; known: {list(known_aug)} "
                          "(Keras units: rotation_deg and shear_deg in degrees, shift a fraction of the side)")
    if not 0 <= float(aug.get("shear_deg", 0)) < 60 or not 0 <= float(aug.get("shift", 0)) < 1:
        raise ConfigError(f"train.augment needs 0 <= shear_deg < 60 and 0 <= shift < 1, got {aug}")
    if "heldout_subjects" in (tr.get("selection"), twin):
        fraction = tr.get("val_subject_fraction")
        if not isinstance(fraction, (int, float)) or not 0 < float(fraction) < 1:
            raise ConfigError("selection heldout_subjects needs train.val_subject_fraction in (0, 1), "
                              f"not {fraction!r}")


def selections_of(cfg: dict) -> list[str]:
    """The selections a run trains under: the main one, then its no-peeking twin if any."""
    main, twin = cfg["train"]["selection"], cfg["train"].get("twin_selection")
    return [main] if twin in (None, main) else [main, twin]


def packs_per_gpu(cfg: dict) -> int:
    """How many packs share one GPU: 1 / train.gpus_per_pack, rounded down.

    Ray reads the fraction itself (num_gpus per task); the inline executor runs this many pack
    chains at once in threads, each on its own CUDA stream, so a pack whose early-stopped models
    left the computation does not leave the GPU idle."""
    return max(1, int(1.0 / float(cfg["train"].get("gpus_per_pack", 1.0)) + 1e-6))


def resolve_device(requested: str) -> str:
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, not {requested!r}")
    if requested != "auto":
        return requested
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def epochs_for(cfg: dict, dataset: str, stage: str) -> int:
    """The epoch cap of a stage after scaling (never below one epoch)."""
    base = cfg["datasets"][dataset]["epochs"][stage]
    return max(1, int(round(base * float(cfg["epochs_scale"]))))


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False)
