"""`partfer predict --annotate DIR`: every input drawn with its faces' boxes and labels.

An image becomes `<DIR>/<name>.png` (`.jpg` for a JPEG input); a video becomes `<DIR>/<name>.mp4`,
written by headless OpenCV's FFmpeg with the MPEG-4 Part 2 encoder ("mp4v": the wheels carry no
H.264 encoder), or Motion-JPEG `.avi` where that encoder cannot open, at the video's frame rate
divided by --every (one written frame per classified frame). A source is drawn once all its rows
are known, from a second read of the source, so the prediction stream keeps no colour frames.
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from partfer import atomicio
from partfer.data_prep.errors import RejectError
from partfer.orchestrator.inference.media import Source, colour_image, colour_video_frames, frame_rate, open_video
from partfer.orchestrator.storage.store import atomic_write_bytes

# BGR colours, one per class index (cycled), readable on photographs
PALETTE = ((60, 180, 75), (48, 130, 245), (230, 50, 240), (25, 225, 255), (240, 240, 70), (75, 25, 230),
           (180, 30, 145), (0, 128, 128), (255, 190, 220))
FAILED = (160, 160, 160)                 # a face found but not classified (its crop was refused)
VIDEO_WRITERS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
DEFAULT_FPS = 25.0


def safe_stem(name: str) -> str:
    """A file-name stem of an input's name: letters, digits, dot, dash, underscore; at most 60."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem.replace(":", "-"))[:60] or "input"


@dataclass(frozen=True)
class Mark:
    """One face to draw: its box in the frame's pixels, its caption and its colour."""
    box: tuple[float, float, float, float]
    text: str
    colour: tuple[int, int, int]


def draw(canvas: np.ndarray, marks: list[Mark]) -> np.ndarray:
    """The marks drawn on a BGR image (in place, also returned): a box and a filled caption."""
    h, w = canvas.shape[:2]
    side = min(h, w)
    thick = max(1, round(side / 300))
    scale = max(0.4, side / 900)
    for mark in marks:
        x0, y0, x1, y1 = (int(round(v)) for v in mark.box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), mark.colour, thick, cv2.LINE_AA)
        (tw, th), base = cv2.getTextSize(mark.text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = y0 - th - base - 2 * thick
        if top < 0:                                  # no room above the box: caption inside it
            top = y0
        left = min(max(0, x0), max(0, w - tw - 2 * thick))
        cv2.rectangle(canvas, (left, top), (left + tw + 2 * thick, top + th + base + 2 * thick), mark.colour,
                      cv2.FILLED)
        cv2.putText(canvas, mark.text, (left + thick, top + th + thick), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    return canvas


def marks_of(rows: pd.DataFrame, classes: list[str]) -> dict[int | None, list[Mark]]:
    """The marks of output rows, by frame (None: a still image); rows without a box draw nothing."""
    colour_of = {c: PALETTE[i % len(PALETTE)] for i, c in enumerate(classes)}
    found: dict[int | None, list[Mark]] = defaultdict(list)
    for row in rows.itertuples(index=False):
        if pd.isna(row.x0):
            continue
        frame = None if pd.isna(row.frame) else int(row.frame)
        label = row.label if isinstance(row.label, str) else None
        if label is not None:
            text, colour = f"{label} {float(row.confidence):.2f}", colour_of.get(label, PALETTE[0])
        else:
            text, colour = "not classified", FAILED
        found[frame].append(Mark((row.x0, row.y0, row.x1, row.y1), text, colour))
    return found


class Annotator:
    """Collects each source's rows as chunks are emitted; draws a source once it is complete."""

    def __init__(self, folder: str | os.PathLike, classes: list[str], every: int = 1, channel_order: str = "rgb"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.classes = list(classes)
        self.every = every
        self.channel_order = channel_order
        self._rows: dict[int, list[pd.DataFrame]] = defaultdict(list)
        self._names: set[str] = set()
        self.written: list[Path] = []

    def collect(self, chunk: pd.DataFrame, source_ids: list[int]) -> None:
        ids = np.asarray(source_ids)
        for n in dict.fromkeys(source_ids):
            self._rows[n].append(chunk[ids == n])

    def finish(self, n: int, source: Source) -> Path | None:
        """Draw source n (its rows all collected); the written file, or None when it has no picture."""
        parts = self._rows.pop(n, [])
        marks = marks_of(pd.concat(parts, ignore_index=True), self.classes) if parts else {}
        if source.kind == "video":
            path = self._video(source, marks)
        elif source.kind in ("image", "array"):
            path = self._image(source, marks.get(None, []))
        else:
            path = None
        if path is not None:
            self.written.append(path)
        return path

    def _target(self, source: Source, suffix: str) -> Path:
        stem = safe_stem(source.name)
        name, k = f"{stem}{suffix}", 1
        while name in self._names:
            k += 1
            name = f"{stem}_{k}{suffix}"
        self._names.add(name)
        return self.folder / name

    def _image(self, source: Source, marks: list[Mark]) -> Path | None:
        canvas = colour_image(source, self.channel_order)
        if canvas is None:
            return None
        jpeg = source.kind == "image" and Path(source.path or "").suffix.lower() in (".jpg", ".jpeg")
        path = self._target(source, ".jpg" if jpeg else ".png")
        ok, buf = cv2.imencode(path.suffix, draw(canvas, marks))
        if not ok:
            raise ValueError(f"{path}: the annotated image could not be encoded")
        atomic_write_bytes(path, buf.tobytes())
        return path

    def _video(self, source: Source, marks: dict[int | None, list[Mark]]) -> Path | None:
        try:
            with open_video(source.path) as cap:
                fps = frame_rate(cap) if cap.isOpened() else None
        except (RejectError, OSError):
            return None                      # its row says why; there is nothing to draw
        writer = target = tmp = None
        try:
            for index, image in colour_video_frames(source, self.every):
                if image is None:
                    continue
                if writer is None:
                    rate = (fps or DEFAULT_FPS) / self.every
                    writer, target, tmp = self._open_writer(source, rate, image.shape[1], image.shape[0])
                writer.write(draw(image, marks.get(index, [])))
        except BaseException:
            if writer is not None:
                writer.release()
                Path(tmp).unlink(missing_ok=True)
            raise
        if writer is None:
            return None
        writer.release()
        os.replace(tmp, target)
        return target

    def _open_writer(self, source: Source, fps: float, width: int, height: int):
        for fourcc, suffix in VIDEO_WRITERS:
            target = self._target(source, suffix)
            tmp = Path(f"{atomicio.temp_path(target)}{suffix}")     # FFmpeg picks the container by suffix
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
            if writer.isOpened():
                return writer, target, tmp
            writer.release()
            tmp.unlink(missing_ok=True)
            self._names.discard(target.name)
        raise ValueError(f"{source.name}: OpenCV can write no video here (tried "
                         f"{', '.join(f'{c} {s}' for c, s in VIDEO_WRITERS)})")
