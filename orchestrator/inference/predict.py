"""`partfer predict`: expressions of every face in images, folders and videos, with an exported ensemble.

Each frame goes through the training preprocessing (grayscale, CLAHE, the detector, square crop
resized to the crop size, then orchestrator.training.tensors.resize_uint8 to the network's size and
orchestrator.training.augment.normalise_pixels), every face it holds is classified by all sub-networks at
once (one packed network, batched on the device), and the ensemble sums their softmax vectors.

Output: one row per face (input, input_hex, frame and its time in a video, face, status, message,
the model's caveat, the integer box x, y, w, h, label, confidence and the ensemble's class
probabilities p_<class>; with details also the detector's score, the 68 landmarks and every member's
probabilities p_<member>_<class>); a frame without a face, a face below the minimum detector score
and an input that cannot be read get one row each saying so (status no_face / low_score / error), so
nothing disappears silently. What holds for every row (the model's caveat, a model without a face
detector) is said once, in `Predictor.notes()`, not in each row's message. Rows are produced in
chunks as batches finish, so a long video streams to the output file in bounded memory.
Python: `Predictor.from_dir(dir).predict_image(image)` gives one dict per face, `annotate_image`
also the picture with them drawn.
"""
from __future__ import annotations

import io
import math
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import torch
from tqdm import tqdm

from partfer import atomicio
from partfer.data_prep.detectors import list_detectors, load_detector
from partfer.data_prep.errors import RejectError
from partfer.data_prep.face_crop import Detection, FaceCrop
from partfer.data_prep.file_names import name_hex, name_text
from partfer.data_prep.preprocess import apply_clahe, crop_face
from partfer.data_prep.settings import PrepSettings
from partfer.models.gradcam import gradcam, union
from partfer.models.packed import PackedNetwork
from partfer.models.subnet import SubNetwork
from partfer.orchestrator.inference.annotate import Annotator, draw, marks_of, safe_stem
from partfer.orchestrator.inference.caveat import model_caveat
from partfer.orchestrator.inference.landmarks import Landmarker, landmark_columns
from partfer.orchestrator.training.augment import normalise_pixels
from partfer.orchestrator.config import ConfigError, resolve_device
from partfer.orchestrator.inference.gradcam_sheet import encode_png, gradcam_sheet
from partfer.orchestrator.inference.media import (
    Frame, Source, colour_image, estimated_frames, expand_inputs, frames, image_input,
)
from partfer.orchestrator.storage.model_dir import ModelSpec, load_model_dir
from partfer.orchestrator.storage.store import atomic_write_bytes
from partfer.orchestrator.training.tensors import resize_uint8

OK, NO_FACE, LOW_SCORE, ERROR = "ok", "no_face", "low_score", "error"
BOX_COLUMNS = ("x", "y", "w", "h")       # integer pixels: left, top, width, height of the detector's box
MAX_PENDING_ROWS = 1024       # rows (faces or not) held before a chunk is emitted anyway
OUTPUT_SUFFIXES = (".csv", ".parquet")
NO_DETECTOR = "none"
WHOLE_FRAME_NOTE = ("no face detector (the model's training data used detector none): each whole "
                    "image was classified as one face, faces or not; --detector ssd finds faces")


class PredictError(ValueError):
    """A whole-run problem of prediction (bad device, bad option, unwritable output)."""


@dataclass
class _Chunk:
    """Rows waiting for their batch: face rows point at their crop in `crops`."""
    rows: list[dict] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    face_rows: list[int] = field(default_factory=list)


class Predictor:
    """An exported ensemble ready to classify faces: its packed network on a device and its detector."""

    def __init__(self, spec: ModelSpec, nets: list[SubNetwork], device: str = "auto", detector: str | None = None,
                 min_score: float = 0.0):
        self.spec = spec
        self.classes = list(spec.classes)
        self.members = spec.member_names
        try:
            resolved = resolve_device(device)
        except ConfigError as err:
            raise PredictError(str(err)) from None
        if resolved.startswith("cuda") and not torch.cuda.is_available():
            raise PredictError("--device cuda was asked for, but torch sees no CUDA device here")
        self.device = torch.device(resolved)
        # All members in one packed network: one pass of a batch computes every sub-network.
        self.net = PackedNetwork.from_subnetworks(nets).to(self.device).eval()
        prep = dict(spec.preprocessing)
        if detector is not None:
            if detector not in list_detectors():
                raise PredictError(f"unknown detector {detector!r}; known: {', '.join(list_detectors())}")
            prep["detector"] = detector
        self.settings = PrepSettings.from_dict(prep)
        self.detector = load_detector(self.settings.detector, self.settings)
        if isinstance(min_score, bool) or not isinstance(min_score, (int, float)) or not math.isfinite(min_score):
            raise PredictError(f"--min-score must be a finite number, not {min_score!r}")
        self.min_score = float(min_score)
        # Without a detector every frame is "one face": said once (notes), not on every row.
        self.whole_frame_note = (WHOLE_FRAME_NOTE if self.settings.detector == NO_DETECTOR else "")
        self.caveat = model_caveat(spec)
        self._landmarker: Landmarker | None = None

    @classmethod
    def from_dir(cls, model_dir: str | os.PathLike, device: str = "auto", detector: str | None = None,
                 min_score: float = 0.0) -> "Predictor":
        """Load a directory written by `partfer export`, a path or a URI (detector: override the
        exported one; min_score: faces the detector scores lower are not classified)."""
        spec, nets = load_model_dir(model_dir)
        return cls(spec, nets, device=device, detector=detector, min_score=min_score)

    @property
    def landmarker(self) -> Landmarker:
        """The model's landmark annotator, loaded on first use (only --details needs it)."""
        if self._landmarker is None:
            self._landmarker = Landmarker(self.settings)
        return self._landmarker

    def notes(self, details: bool = False) -> list[tuple[str, str]]:
        """What holds for every row, once: (level, text) pairs, level "warning" or "note"."""
        found = []
        if self.caveat.text:
            found.append(("warning", self.caveat.text))
        if self.whole_frame_note:
            found.append(("note", self.whole_frame_note))
        if details and self.landmarker.note:
            found.append(("note", self.landmarker.note))
        return found

    # ---- columns ---------------------------------------------------------------------------

    def prob_columns(self, details: bool = False) -> list[str]:
        """The ensemble's p_<class>, then (details) each member's p_<member>_<class>."""
        columns = [f"p_{c}" for c in self.classes]
        if details:
            columns += self.member_columns()
        return columns

    def member_columns(self) -> list[str]:
        return [f"p_{m}_{c}" for m in self.members for c in self.classes]

    def schema(self, with_gradcam: bool = False, details: bool = False) -> pa.Schema:
        """Arrow schema of the output (also the column order of the DataFrame)."""
        fields = [pa.field("input", pa.string()), pa.field("input_hex", pa.string()),
                  pa.field("frame", pa.int64()), pa.field("time_s", pa.float64()),
                  pa.field("face", pa.int64()), pa.field("status", pa.string()), pa.field("message", pa.string()),
                  pa.field("model_caveat", pa.string())]
        fields += [pa.field(c, pa.int64()) for c in BOX_COLUMNS]
        fields += [pa.field("label", pa.string()), pa.field("confidence", pa.float32())]
        fields += [pa.field(c, pa.float32()) for c in self.prob_columns()]
        if details:
            fields.append(pa.field("score", pa.float64()))
            fields += [pa.field(c, pa.float32()) for c in landmark_columns()]
            fields += [pa.field(c, pa.float32()) for c in self.member_columns()]
        if with_gradcam:
            fields.append(pa.field("gradcam", pa.string()))
        return pa.schema(fields)

    # ---- the network -------------------------------------------------------------------------

    def network_input(self, crops: np.ndarray) -> torch.Tensor:
        """uint8 crops (N, S, S) -> (N, M, 1, s, s) in [-1, 1]: every member sees the same face."""
        images = normalise_pixels(resize_uint8(np.ascontiguousarray(crops), self.spec.image_size).to(self.device))
        return images[:, None, None].expand(-1, len(self.members), 1, -1, -1)

    @torch.no_grad()
    def probabilities(self, crops: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Each member's softmax for each crop: (N, M, C) float32."""
        out = []
        for start in range(0, len(crops), batch_size):
            logits = self.net.classify(self.network_input(crops[start:start + batch_size]))
            out.append(torch.softmax(logits.float(), dim=-1).cpu())
        if not out:
            return np.zeros((0, len(self.members), len(self.classes)), np.float32)
        return torch.cat(out).numpy().astype(np.float32)

    def gradcam_maps(self, crops: np.ndarray, member_classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each member's Grad-CAM map for the given classes (N, M) and their union: (N, M, s, s), (N, s, s)."""
        x = self.network_input(crops)
        maps = gradcam(self.net, x, torch.as_tensor(member_classes, device=self.device))
        return maps.cpu().numpy(), union(maps).cpu().numpy()

    # ---- faces -------------------------------------------------------------------------------

    def _faces(self, gray: np.ndarray) -> list[tuple[Detection, FaceCrop | None, str]]:
        """(detection, face crop or None, reason) for every face of a frame, most confident first;
        a face the detector scores below min_score is not cropped."""
        equalised = apply_clahe(gray, self.settings.clahe_clip, self.settings.clahe_tile)
        found = []
        for detection in self.detector.detect_all(equalised):
            if detection.score < self.min_score:
                found.append((detection, None, f"not classified: detector score {detection.score:.3f} is below "
                                               f"--min-score {self.min_score:g}"))
                continue
            try:
                found.append((detection, crop_face(equalised, detection, self.settings), ""))
            except RejectError as err:
                found.append((detection, None, str(err)))
        return found

    def _add_frame(self, chunk: _Chunk, frame: Frame, details: bool = False) -> None:
        base = {"input": name_text(frame.source.name), "input_hex": name_hex(frame.source.name) or None,
                "frame": frame.index, "time_s": frame.time, "face": None}
        if frame.gray is None:
            chunk.rows.append({**base, "status": ERROR, "message": name_text(frame.error)})
            return
        faces = self._faces(frame.gray)
        if not faces:
            chunk.rows.append({**base, "status": NO_FACE, "message": f"no face found by the {self.detector.name} detector"})
            return
        for k, (det, face, reason) in enumerate(faces):
            row = {**base, "face": k, **integer_box(det.box), "score": det.score, "message": reason or None}
            if face is not None:
                row["status"] = OK
                if details:
                    row["landmarks"] = self.landmarker.points(face, frame.source.name)
                chunk.face_rows.append(len(chunk.rows))
                chunk.crops.append(face.crop)
            else:
                row["status"] = LOW_SCORE if det.score < self.min_score else ERROR
            chunk.rows.append(row)

    def _emit(self, chunk: _Chunk, source_ids: list[int], batch_size: int, gradcam_dir: Path | None,
              details: bool = False) -> pd.DataFrame:
        """Classify the chunk's crops and turn its rows into a DataFrame in the output schema."""
        n_rows, n_members, n_classes = len(chunk.rows), len(self.members), len(self.classes)
        probs = np.full((n_rows, n_members + 1, n_classes), np.nan, np.float32)
        labels: list[str | None] = [None] * n_rows
        paths: list[str | None] = [None] * n_rows
        if chunk.crops:
            crops = np.stack(chunk.crops)
            member = self.probabilities(crops, batch_size)                       # (F, M, C)
            ensemble = member.sum(axis=1)
            ensemble /= ensemble.sum(axis=1, keepdims=True)
            rows = np.asarray(chunk.face_rows)
            probs[rows, :n_members] = member
            probs[rows, n_members] = ensemble
            for r, c in zip(chunk.face_rows, ensemble.argmax(axis=1)):
                labels[r] = self.classes[int(c)]
            if gradcam_dir is not None:
                self._write_sheets(gradcam_dir, chunk, source_ids, crops, member.argmax(axis=2), labels,
                                   paths, batch_size)
        columns: dict[str, object] = {}
        for name in ("input", "input_hex", "frame", "time_s", "face", "status", "message"):
            columns[name] = [row.get(name) for row in chunk.rows]
        columns["model_caveat"] = [self.caveat.code or None] * n_rows
        for name in BOX_COLUMNS:
            columns[name] = [row.get(name) for row in chunk.rows]
        columns["label"] = labels
        columns["confidence"] = probs[:, n_members].max(axis=1)      # NaN where no face was classified
        for c, name in enumerate(self.prob_columns()):
            columns[name] = probs[:, n_members, c]
        if details:
            columns["score"] = [row.get("score") for row in chunk.rows]
            points = np.full((n_rows, len(landmark_columns())), np.nan, np.float32)
            for r, row in enumerate(chunk.rows):
                if row.get("landmarks") is not None:
                    points[r] = row["landmarks"].reshape(-1)
            for i, name in enumerate(landmark_columns()):
                columns[name] = points[:, i]
            flat = probs[:, :n_members].reshape(n_rows, -1)
            for i, name in enumerate(self.member_columns()):
                columns[name] = flat[:, i]
        if gradcam_dir is not None:
            columns["gradcam"] = paths
        frame = pd.DataFrame(columns)
        for name in ("frame", "face") + BOX_COLUMNS:
            frame[name] = frame[name].astype("Int64")
        for name in ("time_s",) + (("score",) if details else ()):
            frame[name] = frame[name].astype("float64")
        return frame

    def _write_sheets(self, folder: Path, chunk: _Chunk, source_ids: list[int], crops: np.ndarray,
                      predicted: np.ndarray, labels: list, paths: list, batch_size: int) -> None:
        """Grad-CAM of each member for its own predicted class, one PNG per face; fills `paths`."""
        for start in range(0, len(crops), batch_size):
            maps, merged = self.gradcam_maps(crops[start:start + batch_size], predicted[start:start + batch_size])
            for j in range(len(maps)):
                f = start + j
                r = chunk.face_rows[f]
                paths[r] = self._write_sheet(folder, chunk.rows[r], source_ids[r], crops[f], maps[j], merged[j],
                                             predicted[f], labels[r])

    def _write_sheet(self, folder: Path, row: dict, source_id: int, crop: np.ndarray, maps: np.ndarray,
                     merged: np.ndarray, predicted: np.ndarray, label: str) -> str:
        name = f"{source_id:05d}_{safe_stem(row['input'])}"
        if row["frame"] is not None:
            name += f"_frame{row['frame']:06d}"
        name += f"_face{row['face']}.png"
        titles = [f"{m}: {self.classes[int(c)]}" for m, c in zip(self.members, predicted)]
        sheet = gradcam_sheet(crop, maps, titles, merged, f"union (ensemble: {label})")
        path = folder / name
        atomic_write_bytes(path, encode_png(sheet))
        return name_text(str(path))

    # ---- the public calls ----------------------------------------------------------------------

    def iter_predict(self, inputs: Sequence[str | os.PathLike | np.ndarray] | str | os.PathLike | np.ndarray,
                     batch_size: int = 64, every: int = 1, gradcam_dir: str | os.PathLike | None = None,
                     progress: bool = False, channel_order: str = "rgb", details: bool = False,
                     annotate_dir: str | os.PathLike | None = None) -> Iterator[pd.DataFrame]:
        """Chunks of output rows, in input order, as batches finish (bounded memory on long videos).
        annotate_dir: once the last chunk is out, each input drawn with its boxes and labels
        (orchestrator.inference.annotate; a folder that cannot take them is refused first)."""
        if isinstance(inputs, (str, os.PathLike, np.ndarray)):
            inputs = [inputs]
        inputs = list(inputs)
        annotator = self.annotator(annotate_dir, every, channel_order, inputs) if annotate_dir is not None else None
        sources = expand_inputs(inputs)
        yield from self._chunks(sources, batch_size, every, gradcam_dir, progress, channel_order, details, annotator)
        if annotator is not None:
            annotator.draw_all(sources)

    def annotator(self, folder: str | os.PathLike, every: int = 1, channel_order: str = "rgb",
                  inputs: Sequence = ()) -> Annotator:
        """An Annotator drawing this model's classes into `folder` (AnnotateError: it cannot)."""
        return Annotator(folder, self.classes, every, channel_order, list(inputs))

    def _chunks(self, sources: list[Source], batch_size: int, every: int, gradcam_dir: str | os.PathLike | None,
                progress: bool, channel_order: str, details: bool,
                annotator: Annotator | None) -> Iterator[pd.DataFrame]:
        """The output rows of `sources` in chunks; an annotator collects their marks (draws nothing)."""
        if batch_size < 1 or every < 1:
            raise PredictError(f"batch size and --every must be >= 1 (got {batch_size}, {every})")
        folder = None
        if gradcam_dir is not None:
            folder = Path(gradcam_dir)
            folder.mkdir(parents=True, exist_ok=True)
        total = sum(estimated_frames(s, every) for s in sources) if progress else None
        bar = tqdm(total=total, disable=not progress, file=sys.stderr, unit="frame", desc="predict",
                   mininterval=0.5)
        chunk, ids = _Chunk(), []

        def emitted() -> pd.DataFrame:
            out = self._emit(chunk, ids, batch_size, folder, details)
            if annotator is not None:
                annotator.collect(out, ids)
            return out
        try:
            for n, source in enumerate(sources):
                for frame in frames(source, every, channel_order):
                    before = len(chunk.rows)
                    self._add_frame(chunk, frame, details)
                    ids.extend([n] * (len(chunk.rows) - before))
                    bar.update(1)
                    if len(chunk.crops) >= batch_size or len(chunk.rows) >= MAX_PENDING_ROWS:
                        yield emitted()
                        chunk, ids = _Chunk(), []
            if chunk.rows:
                yield emitted()
        finally:
            bar.close()

    def predict(self, inputs, batch_size: int = 64, every: int = 1, gradcam_dir: str | os.PathLike | None = None,
                progress: bool = False, channel_order: str = "rgb", details: bool = False,
                annotate_dir: str | os.PathLike | None = None) -> pd.DataFrame:
        """All output rows as one DataFrame. Inputs: paths (files, folders, videos) or numpy images
        (colour arrays in `channel_order`)."""
        chunks = list(self.iter_predict(inputs, batch_size, every, gradcam_dir, progress, channel_order,
                                        details, annotate_dir))
        if not chunks:
            return self._empty(gradcam_dir is not None, details)
        return pd.concat(chunks, ignore_index=True)

    def predict_image(self, image, channel_order: str = "rgb") -> list[dict]:
        """One dict per face of one image: a path (str or Path), a numpy array (colour in
        `channel_order`, or grey) or a PIL image. Each dict: face, status, box (x, y, w, h) in the
        image's integer pixels, the detector's score, label, confidence, the ensemble's probabilities
        by class, each member's, the 68 landmarks ((68, 2) array in image pixels, or None) and a
        message; [] when no face is found. A face found but not classified (a refused crop, a score
        below min_score) has label None and says why in `message`; what is no image raises PredictError."""
        return self._face_dicts(self._image_rows(image, channel_order)[0])

    def annotate_image(self, image, channel_order: str = "rgb") -> tuple[list[dict], np.ndarray]:
        """predict_image's faces and the image with their boxes and labels drawn, in memory: an
        (H, W, 3) uint8 array in `channel_order` (RGB for a path or a PIL image)."""
        rows, source, order = self._image_rows(image, channel_order)
        canvas = colour_image(source, order)                     # BGR
        if canvas is None:
            raise PredictError(f"{source.name}: the image could not be read again to draw on")
        drawn = draw(canvas, marks_of(rows, self.classes).get(None, []))
        if order == "rgb":
            drawn = np.ascontiguousarray(drawn[:, :, ::-1])
        return self._face_dicts(rows), drawn

    def _image_rows(self, image, channel_order: str) -> tuple[pd.DataFrame, Source, str]:
        """The detailed rows of one image, its source and the channel order it is read in."""
        try:
            item, order = image_input(image, channel_order)
        except TypeError as err:
            raise PredictError(str(err)) from None
        source = expand_inputs([item])[0]
        if source.kind == "video":
            raise PredictError(f"{source.name} is a video; predict_image takes one image (predict takes videos)")
        if source.kind == "invalid":
            raise PredictError(f"{source.name}: {source.reason}")
        rows = pd.concat(list(self._chunks([source], 64, 1, None, False, order, True, None)), ignore_index=True)
        if (rows["status"] == ERROR).any() and rows["face"].isna().all():
            raise PredictError(f"not an image: {rows['message'].iloc[0]}")
        return rows, source, order

    def _face_dicts(self, rows: pd.DataFrame) -> list[dict]:
        faces = []
        points = landmark_columns()
        for row in rows[rows["status"] != NO_FACE].to_dict("records"):
            classified = row["status"] == OK
            landmarks = np.array([row[c] for c in points], np.float32).reshape(-1, 2)
            faces.append({
                "face": int(row["face"]), "status": row["status"],
                "box": tuple(int(row[k]) for k in BOX_COLUMNS), "score": float(row["score"]),
                "label": row["label"] if classified else None,
                "confidence": float(row["confidence"]) if classified else None,
                "probabilities": {c: float(row[f"p_{c}"]) for c in self.classes} if classified else None,
                "members": ({m: {c: float(row[f"p_{m}_{c}"]) for c in self.classes} for m in self.members}
                            if classified else None),
                "landmarks": landmarks if np.isfinite(landmarks).all() else None,
                "message": row["message"] if isinstance(row["message"], str) else ""})
        return faces

    def _empty(self, with_gradcam: bool, details: bool = False) -> pd.DataFrame:
        return self.schema(with_gradcam, details).empty_table().to_pandas(types_mapper=_NULLABLE_INTEGERS.get)


_NULLABLE_INTEGERS = {pa.int64(): pd.Int64Dtype()}


def integer_box(box: tuple[float, float, float, float]) -> dict[str, int]:
    """A detector's box (x0, y0, x1, y1, in float pixels) as integer x, y, w, h (corners rounded)."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    return {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0}


# ---- writing ---------------------------------------------------------------------------------------

@dataclass
class Summary:
    rows: int = 0
    faces: int = 0
    no_face: int = 0
    low_score: int = 0            # faces below --min-score, not classified
    errors: int = 0
    frames_read: int = 0          # rows of a frame that was decoded (a face, none, or a refused crop)

    def add(self, chunk: pd.DataFrame) -> None:
        self.rows += len(chunk)
        counts = chunk["status"].value_counts()
        self.faces += int(counts.get(OK, 0))
        self.no_face += int(counts.get(NO_FACE, 0))
        self.low_score += int(counts.get(LOW_SCORE, 0))
        self.errors += int(counts.get(ERROR, 0))
        self.frames_read += int(((chunk["status"] != ERROR) | chunk["face"].notna()).sum())


def write_predictions(chunks: Iterator[pd.DataFrame], out: str | os.PathLike | None, schema: pa.Schema) -> Summary:
    """Stream chunks to CSV (stdout when out is None) or Parquet; a file appears only when complete."""
    summary = Summary()
    if out is None:
        for i, chunk in enumerate(chunks):
            _to_stdout(lambda: chunk.to_csv(sys.stdout, header=i == 0, index=False))
            summary.add(chunk)
        _to_stdout(sys.stdout.flush)
        return summary
    check_output(out)
    path = Path(out)
    suffix = path.suffix.lower()

    def write(tmp: Path) -> None:
        if suffix == ".csv":
            with open(tmp, "w", newline="") as fh:
                fh.write(",".join(schema.names) + "\n")
                for chunk in chunks:
                    chunk.to_csv(fh, header=False, index=False)
                    summary.add(chunk)
        else:
            import pyarrow.parquet as pq

            writer = None
            try:
                for chunk in chunks:
                    table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False)
                    if writer is None:    # the first chunk's pandas metadata: integers read back as Int64
                        writer = pq.ParquetWriter(tmp, table.schema)
                    writer.write_table(table)
                    summary.add(chunk)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, schema)
            finally:
                if writer is not None:
                    writer.close()
    atomicio.write_with(path, write)
    return summary


def _to_stdout(write) -> None:
    """Run a write to standard output; PredictError (one line) when it fails (a full disk, a closed
    pipe). What is still buffered then goes to /dev/null, or the interpreter's last flush would
    fail again at exit with a message of its own."""
    try:
        write()
    except OSError as err:
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        except (OSError, ValueError, io.UnsupportedOperation):
            pass
        raise PredictError(f"cannot write the predictions to standard output "
                           f"({err.strerror or type(err).__name__})") from None


def check_output(out: str | os.PathLike | None) -> None:
    """PredictError, before any prediction, for an --out that cannot become the output file."""
    if out is None:
        return
    path = Path(out)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise PredictError(f"--out must end in {' or '.join(OUTPUT_SUFFIXES)}, got {path.name}")
    if path.is_dir():
        raise PredictError(f"--out {path} is a folder; give a {' or '.join(OUTPUT_SUFFIXES)} file")
    for place in path.parents:
        if os.path.lexists(place):
            if not place.is_dir():
                raise PredictError(f"--out {path}: {place} is a file, not a folder")
            break
