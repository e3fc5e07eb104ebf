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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from partfer import atomicio
from partfer.models.config import ArchConfig, ArchitectureError
from partfer.models.subnet import SubNetwork
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
        try:
            raw = json.loads(text)
        except ValueError as err:
            raise ModelFormatError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ModelFormatError(f"{where}: not a partfer model description (format != {FORMAT!r})")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ModelFormatError(f"{where}: format version {raw.get('format_version')} is not "
                                   f"{FORMAT_VERSION}; export the model again with this partfer")
        known = {f.name for f in fields(cls)}
        try:
            members = [MemberSpec(**m) for m in raw["members"]]
            spec = cls(**{k: v for k, v in raw.items() if k in known and k != "members"}, members=members)
            spec.arch                                        # validates the architecture
        except (KeyError, TypeError, ArchitectureError) as err:
            raise ModelFormatError(f"{where}: incomplete or invalid model description ({err})") from None
        weights = spec.weights
        if not isinstance(weights, str) or weights in ("", ".", "..") or "/" in weights or "\\" in weights:
            raise ModelFormatError(f"{where}: weights {weights!r} must be a file name inside the model directory")
        names = spec.member_names
        if not names or len(set(names)) != len(names) or any("." in n or not n for n in names):
            raise ModelFormatError(f"{where}: member names must be present, unique and free of dots")
        return spec


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
    if any("." in n for n in spec.member_names):
        raise ValueError(f"member names must not contain dots: {spec.member_names}")
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
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
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
    return ModelSpec.from_json(path.read_text(), str(path))


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
    spec = ModelSpec.from_json(spec_path.read_text(), uri + "/" + SPEC_FILE)
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
