"""YAML configuration: composed defaults, `include` chains, command-line overrides, validation.

A config is a plain nested dict. Each default is written once, in the file of its concern:
configs/run.yaml (run settings: storage, executor, device, checkpoints, retries),
configs/hardware/<profile>.yaml (pack sizes, GPU/CPU shares, kernel switches; the profile is the
top-level `hardware` key) and configs/paper.yaml (the paper's hyper-parameters and protocol).
`load_config` composes run settings <- hardware profile <- the experiment config's include chain
<- overrides given as dotted keys (`train.patience=5`), so the resolved config has every key, and
checks it strictly (orchestrator/config_schema.py) plus the few things that would otherwise fail
deep inside a run (unknown networks or parts, missing epoch caps).
"""
from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from partfer.data_prep.ibug68 import PARTS
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.orchestrator.config_schema import ConfigKeyError, check_against
from partfer.orchestrator.messages import shown
from partfer.orchestrator.networks import NETWORKS

# the configs shipped inside the package (the checkout's configs/ folder in an editable install)
CONFIG_DIR = Path(str(resources.files("partfer").joinpath("configs")))
RUN_SETTINGS = "run.yaml"            # in CONFIG_DIR: the run settings every config starts from
HARDWARE_DIR = "hardware"            # in CONFIG_DIR: one <profile>.yaml per kind of machine
STAGES = ("baseline", "landmark", "head", "finetune")
# train.selection: which epoch's weights a stage keeps (configs/paper.yaml explains each)
SELECTIONS = ("evaluated_fold", "heldout_subjects", "last")
TRANSFER_BN = ("frozen", "trainable")
LANDMARK_TARGETS = ("crop", "standardized")


class ConfigError(ValueError):
    """A configuration that cannot describe a run. Its message names the files involved whole and
    the offending value through messages.shown. Key names and the reasons of lower layers (a model
    architecture, a synthetic request) quote what they were given in full, so a message past
    MAX_MESSAGE characters, far more than paths and a shown value take, keeps only its two ends."""

    MAX_MESSAGE = 2000
    HEAD, TAIL = 1500, 400         # what a longer message keeps of its start and of its end

    def __init__(self, message: str):
        if len(message) > self.MAX_MESSAGE:
            left_out = len(message) - self.HEAD - self.TAIL
            message = f"{message[:self.HEAD]} [... {left_out:,} characters left out ...] {message[-self.TAIL:]}"
        super().__init__(message)


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


# A config is a page of settings: a larger file is refused before YAML reads it.
MAX_CONFIG_BYTES = 1 << 20


class _NoAliasLoader(yaml.SafeLoader):
    """YAML's safe loader without aliases (`*name`, `<<: *name`): a config never needs one, and a
    few nested aliases (an "alias bomb") expand into gigabytes wherever the config is copied,
    merged, hashed or saved."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{mark.name}: line {mark.line + 1}: YAML aliases (*name) are not allowed in a "
                              f"config; write the value out")
        return super().compose_node(parent, index)


def read_yaml(path: Path) -> Any:
    """A YAML file's content, loaded safely: at most MAX_CONFIG_BYTES, no aliases. Errors name the
    file, the line and column, and never quote its content."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise ConfigError(f"{path}: cannot be read ({err.strerror or type(err).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, too large for a config")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text, not a config") from None
    loader = _NoAliasLoader(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where} ({exc.problem or exc.context})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({type(exc).__name__})") from None
    finally:
        loader.dispose()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _included(path: Path, include: Any) -> Path:
    """The file an `include` in `path` names: a file in path's folder or below (a relative path
    that stays there, links resolved), or a config shipped with partfer (configs/, by name or
    path). Anything else is refused: an include could otherwise read any file on the machine."""
    if not isinstance(include, str) or not include.strip():
        raise ConfigError(f"{path}: include must be a config name or a relative path, not "
                          f"{'empty text' if isinstance(include, str) else type(include).__name__}")
    folder, shipped = path.parent, CONFIG_DIR.resolve()
    named = Path(include)
    candidates = [] if named.is_absolute() else [(folder / named).resolve()]
    candidates += [named.resolve()] if named.is_absolute() else []
    candidates += [(shipped / include).resolve(), (shipped / f"{include}.yaml").resolve()]
    for candidate in candidates:
        if candidate.is_file() and (_within(candidate, folder) or _within(candidate, shipped)):
            return candidate
    if any(c.is_file() for c in candidates):
        raise ConfigError(f"{path}: include {include!r} is refused: it leads outside {folder} and outside "
                          f"partfer's configs ({shipped}); an include names a shipped config or a file "
                          f"beside the including one")
    raise ConfigError(f"{path}: include {include!r} not found (looked in {folder} and {shipped})")


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"include cycle through {path}")
    raw = read_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    include = raw.pop("include", None)
    if include is None:
        return raw
    return _merge(_read(_included(path, include), seen + (path,)), raw)


def read_config_file(name_or_path: str) -> dict:
    """One config file with its include chain merged in (no run settings, no hardware profile)."""
    return _read(find_config(name_or_path))


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


def hardware_profiles() -> list[str]:
    """The names `hardware` may take: the files in configs/hardware/."""
    return sorted(path.stem for path in (CONFIG_DIR / HARDWARE_DIR).glob("*.yaml"))


def composed_defaults(hardware: Any = None) -> dict:
    """Run settings with a hardware profile over them (None: run.yaml's own `hardware`)."""
    run = _read(CONFIG_DIR / RUN_SETTINGS)
    name = run["hardware"] if hardware is None else hardware
    known = hardware_profiles()
    if not isinstance(name, str) or name not in known:
        raise ConfigError(f"unknown hardware profile {shown(name)}; known: {', '.join(known)} "
                          f"({CONFIG_DIR / HARDWARE_DIR})")
    return _merge(run, {**_read(CONFIG_DIR / HARDWARE_DIR / f"{name}.yaml"), "hardware": name})


def _ordered_like(tree: dict, first: dict) -> dict:
    """`tree` with the keys of `first` first, at every level (the saved config reads paper-first)."""
    out = {}
    for key, value in first.items():
        if key in tree:
            inner = tree[key]
            out[key] = _ordered_like(inner, value) if isinstance(inner, dict) and isinstance(value, dict) else inner
    for key, value in tree.items():
        out.setdefault(key, value)
    return out


def load_config(name_or_path: str, overrides: dict[str, Any] | None = None) -> dict:
    """The resolved config: run.yaml <- hardware/<profile>.yaml <- the config and its includes <-
    `overrides`. The profile is the overrides' `hardware`, else the config's, else run.yaml's."""
    overrides = dict(overrides or {})
    own = _read(find_config(name_or_path))
    defaults = composed_defaults(overrides.get("hardware", own.get("hardware")))
    cfg = _ordered_like(_merge(defaults, own), own)
    for dotted, value in overrides.items():
        set_dotted(cfg, dotted, value)
    validate(cfg)
    return cfg


COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune-no-cudagraphs")

# What says where and how a run executes, not what it computes: not part of the run's id (the
# hardware profile's name adds nothing to its values, which are in the config; `projection` holds
# measured rates the dry run plans with).
EXECUTION_KEYS = ("storage", "executor", "device", "storage_shared", "hardware", "projection")
# Kernel switches the config no longer has, at the only value a run ever had them: the run id
# hashes them, so that every config keeps the id it had while it carried them.
RETIRED_SWITCHES = {"fused_grey_conv": False, "cuda_graphs": False, "triton_conv": False}
# Recipe settings added later, at the value every run had before them: left out of the id there,
# so that every config keeps the id it had before they existed.
ADDED_AT_DEFAULT = {"landmark_targets": "crop"}


def without_added_defaults(settings: dict) -> dict:
    """`settings` less the ADDED_AT_DEFAULT keys that hold their default: what a run id or a model
    key hashes, so that both stay what they were before those settings existed."""
    return {k: v for k, v in settings.items() if k not in ADDED_AT_DEFAULT or ADDED_AT_DEFAULT[k] != v}


def identity_config(cfg: dict) -> dict:
    """The part of a resolved config that a run's id hashes: everything but EXECUTION_KEYS, with
    RETIRED_SWITCHES under train and ADDED_AT_DEFAULT left out where they hold their default."""
    out = {k: v for k, v in cfg.items() if k not in EXECUTION_KEYS}
    out["train"] = {**without_added_defaults(cfg["train"]), **RETIRED_SWITCHES}
    return out


def compile_mode_of(cfg: dict) -> str:
    """train.compile as a mode name (YAML reads a bare `off` as false, `on` as true)."""
    value = cfg["train"]["compile"]
    if value is False or value is None:
        return "off"
    if value is True:
        return "default"
    return str(value)


@functools.lru_cache(maxsize=1)
def _reference() -> dict:
    """Every known key with its default: run.yaml <- hardware/<default profile> <- paper.yaml."""
    return _merge(composed_defaults(), _read(CONFIG_DIR / "paper.yaml"))


def validate(cfg: dict) -> None:
    """ConfigError for the first key or value that cannot describe a run (checked strictly
    against the composed defaults first: every key known, present and of its kind)."""
    try:
        check_against(cfg, copy.deepcopy(_reference()))
    except ConfigKeyError as err:
        raise ConfigError(str(err)) from None
    if cfg["hardware"] not in hardware_profiles():
        raise ConfigError(f"unknown hardware profile {shown(cfg['hardware'])}; known: {', '.join(hardware_profiles())}")
    if not cfg["networks"]:
        raise ConfigError(f"networks is empty: name at least one of {list(NETWORKS)}")
    by_part = [NETWORKS[n].column for n in cfg["networks"] if n in NETWORKS and NETWORKS[n].by_part]
    if by_part and not cfg["parts"]:
        raise ConfigError(f"parts is empty: {by_part[0]} needs at least one part")
    bad = [n for n in cfg["networks"] if n not in NETWORKS]
    if bad:
        raise ConfigError(f"unknown network(s) {shown(bad)}; choose from {list(NETWORKS)}")
    bad = [p for p in cfg["parts"] if p not in PARTS]
    if bad:
        raise ConfigError(f"unknown part(s) {shown(bad)}; choose from {sorted(PARTS)}")
    if cfg["epochs_scale"] <= 0:
        raise ConfigError("epochs_scale must be > 0")
    if int(cfg["image_size"]) < 24:
        raise ConfigError("image_size must be at least 24 (four 3x3/2 poolings)")
    compile_mode = compile_mode_of(cfg)
    if compile_mode not in COMPILE_MODES:
        raise ConfigError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, not {shown(compile_mode)}")
    _validate_recipe(cfg["train"])
    gpus = float(cfg["train"]["gpus_per_pack"])
    if not 0 < gpus <= 1:
        raise ConfigError(f"train.gpus_per_pack must be in (0, 1] (a pack runs on one GPU), not {gpus}")
    workers = cfg["train"]["workers_per_run"]
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ConfigError(f"train.workers_per_run must be 0 (the planner chooses) or a whole number >= 1, not {shown(workers)}")
    try:
        ArchConfig.from_config(cfg["model"])
    except ArchitectureError as err:
        raise ConfigError(str(err) if str(err).startswith("model:") else f"model: {err}") from None
    for name, spec in (cfg.get("synthetic") or {}).items():
        from partfer.data_prep.synth import check_request     # OpenCV: imported only where data is generated
        try:
            check_request(cfg["datasets"][name].get("layout"), **spec)
        except ValueError as err:
            raise ConfigError(f"synthetic.{name}: {err}") from None
    for name, ds in cfg["datasets"].items():
        missing = [s for s in STAGES if s not in (ds.get("epochs") or {})]
        if missing:
            raise ConfigError(f"datasets.{name}.epochs lacks {missing}")
        if ds.get("protocol") not in ("loso", "kfold", "holdout"):
            raise ConfigError(f"datasets.{name}.protocol must be loso, kfold or holdout")


def _validate_recipe(tr: dict) -> None:
    """The training recipe's knobs (selection, stopping, epoch length, BN in transfer)."""
    if tr["selection"] not in SELECTIONS:
        raise ConfigError(f"train.selection must be one of {', '.join(SELECTIONS)}, not {shown(tr['selection'])}")
    twin = tr["twin_selection"]
    if twin is not None and twin not in SELECTIONS:
        raise ConfigError(f"train.twin_selection must be null or one of {', '.join(SELECTIONS)}, not {shown(twin)}")
    if tr["transfer_bn"] not in TRANSFER_BN:
        raise ConfigError(f"train.transfer_bn must be frozen or trainable, not {shown(tr['transfer_bn'])}")
    if tr["landmark_targets"] not in LANDMARK_TARGETS:
        raise ConfigError(f"train.landmark_targets must be one of {', '.join(LANDMARK_TARGETS)}, "
                          f"not {shown(tr['landmark_targets'])}")
    steps = tr["steps_per_epoch"]
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"train.steps_per_epoch must be a whole number >= 1 or null, not {shown(steps)}")
    patience = tr["patience"]
    if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
        raise ConfigError(f"train.patience must be a whole number of epochs >= 1 or null, not {shown(patience)}")
    aug = tr["augment"]      # its keys: checked against paper.yaml's (Keras units, explained there)
    if not 0 <= float(aug["shear_deg"]) < 60 or not 0 <= float(aug["shift"]) < 1:
        raise ConfigError(f"train.augment needs 0 <= shear_deg < 60 and 0 <= shift < 1, got {aug}")
    if "heldout_subjects" in (tr["selection"], twin):
        fraction = tr["val_subject_fraction"]
        if not isinstance(fraction, (int, float)) or not 0 < float(fraction) < 1:
            raise ConfigError("selection heldout_subjects needs train.val_subject_fraction in (0, 1), "
                              f"not {shown(fraction)}")


def selections_of(cfg: dict) -> list[str]:
    """The selections a run trains under: the main one, then its no-peeking twin if any."""
    main, twin = cfg["train"]["selection"], cfg["train"]["twin_selection"]
    return [main] if twin in (None, main) else [main, twin]


def packs_per_gpu(cfg: dict) -> int:
    """How many packs share one GPU: 1 / train.gpus_per_pack, rounded down.

    Ray reads the fraction itself (num_gpus per task); the inline executor runs this many pack
    chains at once in threads, each on its own CUDA stream, so a pack whose early-stopped models
    left the computation does not leave the GPU idle."""
    return max(1, int(1.0 / float(cfg["train"]["gpus_per_pack"]) + 1e-6))


def resolve_device(requested: str) -> str:
    if requested not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, not {shown(requested)}")
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
