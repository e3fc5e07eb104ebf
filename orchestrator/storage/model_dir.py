"""The exported model directory: one trained ensemble, self-contained, for prediction anywhere.

  <model_dir>/model.json   ModelSpec: classes, members, preprocessing, image size, architecture, origin
  <model_dir>/weights.pt   one plain state dict {"<member>.<SubNetwork key>": tensor}; it holds
                           tensors only, so torch.load(..., weights_only=True) reads it safely

`partfer export` writes it (orchestrator.inference.export), `partfer predict` reads it (orchestrator.inference.predict),
from a path or from the same URIs as a store (`s3://bucket/models/jaffe-el`, `file:///...`): the two
files are copied into this machine's cache first (orchestrator.storage.remote), fresh on every load, since an
export replaces a model directory in place.
The ensemble policy is the paper's: sum the members' softmax vectors, argmax; with every fold
exported, the sum runs over all 5 x K members.
"""
from __future__ import annotations

import io
import json
import shutil
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import torch

from partfer import atomicio
from partfer.data_prep.settings import PrepSettings
from partfer.models.config import IMAGE_SIZE_MAX, IMAGE_SIZE_MIN, ArchConfig, ArchitectureError
from partfer.models.subnet import SubNetwork
from partfer.orchestrator.messages import shown
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.storage.remote import check, is_uri, join
from partfer.orchestrator.storage.store import atomic_write_bytes, local_file

FORMAT = "partfer-model"
FORMAT_VERSION = 1
SPEC_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
ENSEMBLE_POLICY = ("sum of the members' softmax vectors, divided by the number of members; "
                   "label = argmax")
PIXEL_NORMALISATION = "(x / 255 - 0.5) * 2"
RESIZE = "bilinear, antialiased when shrinking (orchestrator.training.tensors.resize_uint8)"


class ModelDirError(FileNotFoundError):
    """The model directory (or one of its files) does not exist."""


class ModelFormatError(ValueError):
    """The model directory exists but is not a readable partfer model."""


@dataclass(frozen=True)
class MemberSpec:
    """One sub-network of the exported ensemble."""
    name: str                   # unique in the ensemble; names columns p_<name>_<class>
    member: str                 # EL: the part; Baseline/FTL: m0..m4
    fold: int
    region: str | None          # landmark region it was pre-trained on (None: Baseline)
    stage: str                  # the stage its weights come from (baseline | finetune)
    key: str                    # content key of that stage in the run's store
    source: str                 # its directory, relative to the run's storage root
    test_acc: float | None = None   # accuracy on its fold's held-out subjects (meta.json)


@dataclass(frozen=True)
class ModelSpec:
    dataset: str
    network: str                # baseline | ftl | el
    classes: list[str]
    members: list[MemberSpec]
    folds: list[int]
    image_size: int             # network input side
    architecture: dict          # ArchConfig.to_dict()
    preprocessing: dict         # data_prep PrepSettings.to_dict() of the training data
    model_config: dict = field(default_factory=dict)   # the run's config.yaml `model:` section
    preprocessing_source: str = ""
    run: dict = field(default_factory=dict)            # run id, directory, config name, shrunk ...
    notes: list[str] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    weights: str = WEIGHTS_FILE
    ensemble: str = ENSEMBLE_POLICY
    pixel_normalisation: str = PIXEL_NORMALISATION
    resize: str = RESIZE

    @property
    def arch(self) -> ArchConfig:
        return ArchConfig(**self.architecture)

    @property
    def member_names(self) -> list[str]:
        return [m.name for m in self.members]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where: str = "model.json") -> "ModelSpec":
        """The spec in `text`, every field checked (check_spec) before anything uses it."""
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ModelFormatError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ModelFormatError(f"{where}: not a partfer model description (format != {FORMAT!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(f"{where}: format version {shown(raw.get('format_version'))} is not "
                                   f"{FORMAT_VERSION}; export the model again with this partfer")
        check_spec(raw, where)
        members = [MemberSpec(**m) for m in raw["members"]]
        return cls(**{k: v for k, v in raw.items() if k != "members"}, members=members)


# ---- the schema of model.json ------------------------------------------------------------------
# What `partfer export` can write, and nothing else: a model.json is read from wherever a user got
# it, and its numbers size what predict allocates (an image_size of 60,000 asked for 23 GB).

MAX_SPEC_BYTES = 4 << 20              # a model.json of 1,000 members is ~300 KB
MAX_CLASSES = 100
MAX_MEMBERS = 1000                    # 5 members x up to 200 folds (--all-folds of a leave-one-subject-out run)
MAX_NAME = 200                        # characters of a name (class, member, data set, key ...)


class _Refused(ValueError):
    """One field of model.json that export could not have written: (field, reason)."""


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _name(value) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_NAME


def _expect(ok: bool, field_name: str, reason: str) -> None:
    if not ok:
        raise _Refused(field_name, reason)


def _check_members(members) -> None:
    _expect(isinstance(members, list) and 1 <= len(members) <= MAX_MEMBERS, "members",
            f"must list 1 to {MAX_MEMBERS} sub-networks")
    required = {f.name for f in fields(MemberSpec) if f.name != "test_acc"}
    known = required | {"test_acc"}
    names = []
    for i, m in enumerate(members):
        where = f"members[{i}]"
        _expect(isinstance(m, dict), where, f"must be a mapping, not {shown(m)}")
        _expect(not (required - set(m)), where, f"lacks {sorted(required - set(m))}")
        _expect(not (set(m) - known), where, f"has unknown fields {sorted(map(str, set(m) - known))}")
        for key in ("name", "member", "stage", "key", "source"):
            _expect(_name(m[key]), f"{where}.{key}", f"must be text of 1 to {MAX_NAME} characters, not {shown(m[key])}")
        _expect("." not in m["name"], f"{where}.name", f"must be free of dots (it prefixes weights), not {shown(m['name'])}")
        _expect(_whole(m["fold"]) and m["fold"] >= -1, f"{where}.fold", f"must be a whole number >= -1, not {shown(m['fold'])}")
        _expect(m["region"] is None or _name(m["region"]), f"{where}.region", f"must be text or null, not {shown(m['region'])}")
        acc = m.get("test_acc")
        _expect(acc is None or (isinstance(acc, (int, float)) and not isinstance(acc, bool) and 0 <= acc <= 1),
                f"{where}.test_acc", f"must be null or a number in [0, 1], not {shown(acc)}")
        names.append(m["name"])
    _expect(len(set(names)) == len(names), "members", "must have unique names")


def _check_fields(raw: dict) -> None:
    known = {f.name for f in fields(ModelSpec)}
    required = {f.name for f in fields(ModelSpec) if f.default is MISSING and f.default_factory is MISSING}
    _expect(not (required - set(raw)), "model description", f"lacks {sorted(required - set(raw))}")
    _expect(not (set(raw) - known), "model description", f"has unknown fields {sorted(map(str, set(raw) - known))}")
    _expect(_name(raw["dataset"]), "dataset", f"must be a name, not {shown(raw['dataset'])}")
    _expect(raw["network"] in NETWORKS, "network", f"must be one of {', '.join(NETWORKS)}, not {shown(raw['network'])}")
    classes = raw["classes"]
    _expect(isinstance(classes, list) and 2 <= len(classes) <= MAX_CLASSES and all(_name(c) for c in classes),
            "classes", f"must list 2 to {MAX_CLASSES} class names, not {shown(classes)}")
    _expect(len(set(classes)) == len(classes), "classes",
            f"must be unique (each names a column p_<class>), not {shown(classes)}")
    _check_members(raw["members"])
    folds = raw["folds"]
    _expect(isinstance(folds, list) and 1 <= len(folds) <= MAX_MEMBERS and all(_whole(k) and k >= -1 for k in folds),
            "folds", f"must list whole numbers >= -1, not {shown(folds)}")
    # export takes image_size from the run's config, whose schema bounds it the same way
    size = raw["image_size"]
    _expect(_whole(size) and IMAGE_SIZE_MIN <= size <= IMAGE_SIZE_MAX, "image_size",
            f"must be a whole number in [{IMAGE_SIZE_MIN}, {IMAGE_SIZE_MAX}], not {shown(size)}")
    arch = raw["architecture"]
    _expect(isinstance(arch, dict), "architecture", f"must be a mapping, not {shown(arch)}")
    unknown = set(arch) - {f.name for f in fields(ArchConfig)}
    _expect(not unknown, "architecture", f"has unknown settings {sorted(map(str, unknown))}")
    try:
        ArchConfig(**arch)                        # the same bounds as a config's `model:` section
    except (ArchitectureError, TypeError, ValueError) as err:
        raise _Refused("architecture", str(err)) from None
    try:
        PrepSettings.from_dict(raw["preprocessing"])
    except (TypeError, ValueError) as err:
        raise _Refused("preprocessing", str(err)) from None
    for key in ("model_config", "run"):
        _expect(isinstance(raw.get(key, {}), dict), key, f"must be a mapping, not {shown(raw.get(key))}")
    notes = raw.get("notes", [])
    _expect(isinstance(notes, list) and all(isinstance(n, str) for n in notes), "notes", "must be a list of text")
    for key in ("preprocessing_source", "ensemble", "pixel_normalisation", "resize"):
        _expect(isinstance(raw.get(key, ""), str), key, f"must be text, not {shown(raw.get(key))}")
    weights = raw.get("weights", WEIGHTS_FILE)
    _expect(isinstance(weights, str) and weights not in ("", ".", "..") and "/" not in weights and "\\" not in weights,
            "weights", f"{shown(weights)} must be a file name inside the model directory")


def check_spec(raw: dict, where: str) -> None:
    """ModelFormatError, one line naming the file, the field and the reason, unless `raw` (a parsed
    model.json) is what export could have written: every field present, of its kind and in its range."""
    try:
        _check_fields(raw)
    except _Refused as refused:
        field_name, reason = refused.args
        raise ModelFormatError(f"{where}: {field_name} {reason}") from None


def build_member(spec: ModelSpec) -> SubNetwork:
    """An (untrained) sub-network with the exported architecture and classifier, no landmark head."""
    return SubNetwork.from_arch(len(spec.classes), None, spec.arch, seed=0)


def write_model_dir(out: str | Path, spec: ModelSpec, states: dict[str, dict[str, torch.Tensor]]) -> Path:
    """Write spec + weights into a fresh directory beside `out`, then move it into place.

    Only a folder that is provably an earlier export (its model.json says format partfer-model, and
    it holds nothing but model.json and the weights) or an empty folder is replaced: anything else
    at `out` (a TensorFlow.js model, a user's folder) is refused and left untouched.
    """
    out = Path(out)
    check_spec(json.loads(spec.to_json()), str(out / SPEC_FILE))     # nothing predict would refuse
    if set(states) != set(spec.member_names):
        raise ValueError(f"weights for {sorted(states)} do not match members {spec.member_names}")
    refusal = _not_replaceable(out)
    if refusal:
        raise ModelFormatError(f"{out} exists and {refusal}; choose another --out")
    build = atomicio.make_temp_dir(out)
    try:
        flat = {f"{name}.{key}": t.detach().cpu().contiguous() for name in spec.member_names
                for key, t in states[name].items()}
        buf = io.BytesIO()
        torch.save(flat, buf)
        atomic_write_bytes(build / WEIGHTS_FILE, buf.getvalue())
        atomic_write_bytes(build / SPEC_FILE, spec.to_json().encode())
        if _not_replaceable(out):          # checked again: someone may have written there since
            raise ModelFormatError(f"{out} changed while exporting and {_not_replaceable(out)}; choose another --out")
        atomicio.replace_dir(build, out)
    except BaseException as err:
        shutil.rmtree(build, ignore_errors=True)
        if isinstance(err, OSError):             # a full disk: name the folder asked for, not our build
            raise atomicio.named(err, out) from err
        raise
    return out


def _not_replaceable(out: Path) -> str:
    """Why the existing `out` may not be replaced by an export ('' when it may, or is absent)."""
    if not out.exists() and not out.is_symlink():
        return ""
    if out.is_symlink() or not out.is_dir():
        return "is not a folder"
    entries = {p.name for p in out.iterdir()}
    if not entries:
        return ""
    if SPEC_FILE not in entries:
        return f"is not a partfer model directory (no {SPEC_FILE})"
    try:
        raw = json.loads((out / SPEC_FILE).read_text())
    except (OSError, ValueError):
        return f"its {SPEC_FILE} is not a partfer model description"
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        return f"its {SPEC_FILE} is not a partfer model description (format is not {FORMAT!r})"
    ours = {SPEC_FILE, raw.get("weights") if isinstance(raw.get("weights"), str) else WEIGHTS_FILE}
    foreign = sorted(entries - ours)
    if foreign:
        return f"holds files an export does not write ({', '.join(foreign[:3])}{' ...' if len(foreign) > 3 else ''})"
    return ""


def read_spec(model_dir: str | Path) -> ModelSpec:
    folder = Path(model_dir)
    if not folder.is_dir():
        raise ModelDirError(f"model directory {folder} does not exist; create one with `partfer export`")
    path = folder / SPEC_FILE
    if not path.is_file():
        raise ModelDirError(f"{folder} is not a partfer model directory (no {SPEC_FILE}); "
                            f"create one with `partfer export`")
    return ModelSpec.from_json(_spec_text(path, str(path)), str(path))


def _spec_text(path: Path, where: str) -> str:
    """model.json's text; refused unread when larger than any export writes."""
    size = path.stat().st_size
    if size > MAX_SPEC_BYTES:
        raise ModelFormatError(f"{where}: {size} bytes, more than any partfer model description ({MAX_SPEC_BYTES} at most)")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ModelFormatError(f"{where}: not UTF-8 text, not a partfer model description") from None


def local_model_dir(location: str | Path) -> Path:
    """A local folder holding the model directory at `location`: the path itself, or this
    machine's fresh copy of model.json and the weights of a model directory at a URI."""
    if not is_uri(str(location)):
        return Path(location)
    uri = str(location)
    check(uri, write=False)
    spec_path = local_file(join(uri, SPEC_FILE), fresh=True, missing_ok=True)
    if spec_path is None:
        raise ModelDirError(f"{uri} is not a partfer model directory (no {SPEC_FILE}); "
                            f"create one with `partfer export`")
    spec = ModelSpec.from_json(_spec_text(spec_path, uri + "/" + SPEC_FILE), uri + "/" + SPEC_FILE)
    if local_file(join(uri, spec.weights), fresh=True, missing_ok=True) is None:
        raise ModelDirError(f"{uri}/{spec.weights} is missing: the model directory is incomplete; export it again")
    return spec_path.parent


def load_model_dir(model_dir: str | Path) -> tuple[ModelSpec, list[SubNetwork]]:
    """The spec and one loaded (eval-mode, CPU) SubNetwork per member, in the spec's order; the
    directory is a path or a URI."""
    model_dir = local_model_dir(model_dir)
    spec = read_spec(model_dir)
    path = Path(model_dir) / spec.weights
    if path.is_symlink() and path.resolve().parent != Path(model_dir).resolve():
        raise ModelFormatError(f"{path} links outside the model directory; export the model again")
    if not path.is_file():
        raise ModelDirError(f"{path} is missing: the model directory is incomplete; export it again")
    try:
        flat = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:    # unpickling refuses anything but tensors; a damaged file raises many types
        raise ModelFormatError(f"{path}: cannot read the weights ({type(err).__name__}: {err})") from None
    nets = []
    for name in spec.member_names:
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
        net = build_member(spec)
        try:
            net.load_state_dict(state, strict=True)
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0]
            raise ModelFormatError(f"{path}: weights of member {name!r} do not fit the architecture "
                                   f"in {SPEC_FILE} ({first})") from None
        nets.append(net.eval())
    return spec, nets
