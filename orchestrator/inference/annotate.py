"""`partfer predict --annotate DIR`: every input drawn with its faces' boxes and labels.

An image becomes `<DIR>/<name>.png` (`.jpg` for a JPEG input); a video becomes `<DIR>/<name>.mp4`,
written by OpenCV's FFmpeg as H.264 ("avc1", what browsers play) where OpenCV can open that encoder,
else as MPEG-4 Part 2 ("mp4v": the headless wheels carry no H.264 encoder; `video_note` then says
how to get H.264), or Motion-JPEG `.avi` where neither opens, at the video's frame rate divided by
--every (one written frame per classified frame). Sources are drawn once every row is
out (the predictions are written first), from a second read of each source, so the prediction
stream keeps no colour frames; only each face's box and caption are held until then.

Nothing is ever written over: a name that is taken (an earlier run's drawing, an input given from
that folder) gets `<name>.annotated.png`, then `<name>.annotated-2.png`, ...; and a folder that is,
or lies inside, a folder given as input is refused (its drawings would become inputs).
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from partfer import atomicio
from partfer.data_prep.errors import RejectError
from partfer.orchestrator.inference.media import Source, colour_image, colour_video_frames, frame_rate, open_video

# BGR colours, one per class index (cycled), readable on photographs
PALETTE = ((60, 180, 75), (48, 130, 245), (230, 50, 240), (25, 225, 255), (240, 240, 70), (75, 25, 230),
           (180, 30, 145), (0, 128, 128), (255, 190, 220))
FAILED = (160, 160, 160)                 # a face found but not classified (its crop was refused)
VIDEO_WRITERS = (("avc1", ".mp4"), ("mp4v", ".mp4"), ("MJPG", ".avi"))    # the first that opens is used
BROWSER_CODEC = "avc1"                   # H.264: the codec every browser plays in an .mp4
PROBE_SIDE = 64                          # pixels of the tiny video that tests whether an encoder opens
NOT_BROWSER_NOTE = ("annotated videos are {codec}, not H.264 (this OpenCV has no H.264 encoder): browsers may "
                    "not play them; re-encode with `ffmpeg -i IN.mp4 -c:v libx264 -pix_fmt yuv420p OUT.mp4`, "
                    "or use an OpenCV built with an H.264 encoder (libx264 or OpenH264)")
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
        if pd.isna(row.x):
            continue
        frame = None if pd.isna(row.frame) else int(row.frame)
        label = row.label if isinstance(row.label, str) else None
        if label is not None:
            text, colour = f"{label} {float(row.confidence):.2f}", colour_of.get(label, PALETTE[0])
        else:
            text, colour = "not classified", FAILED
        x, y = int(row.x), int(row.y)
        found[frame].append(Mark((x, y, x + int(row.w), y + int(row.h)), text, colour))
    return found


@functools.lru_cache(maxsize=None)
def encoder_opens(fourcc: str, suffix: str) -> bool:
    """Whether OpenCV can open a video writer with this codec here, tried once per process on a
    tiny file with FFmpeg's complaints about a missing encoder kept off stderr."""
    with tempfile.TemporaryDirectory() as folder:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            writer = cv2.VideoWriter(os.path.join(folder, "probe" + suffix), cv2.VideoWriter_fourcc(*fourcc),
                                     DEFAULT_FPS, (PROBE_SIDE, PROBE_SIDE))
            opened = writer.isOpened()
            writer.release()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)
    return opened


class AnnotateError(ValueError):
    """An --annotate folder that cannot be used, or a drawing that cannot be written (one line)."""


def refusal(folder: Path, inputs: list) -> str:
    """Why `folder` cannot take drawings ('' when it can): a file at or above it, or an input folder
    (or one inside it)."""
    for place in (folder, *folder.parents):
        if os.path.lexists(place):
            if not place.is_dir():
                return (f"--annotate {folder} is a file, not a folder" if place == folder
                        else f"--annotate {folder}: {place} is a file, not a folder")
            break
    target = folder.resolve()
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and Path(item).is_dir():
            given = Path(item).resolve()
            if target == given or given in target.parents:
                return (f"--annotate {folder} is the input folder {item}" if target == given else
                        f"--annotate {folder} is inside the input folder {item}") + \
                       "; its drawings would be read as inputs next time: choose another folder"
    return ""


class Annotator:
    """Collects each source's marks as chunks are emitted; draws the sources at the end."""

    def __init__(self, folder: str | os.PathLike, classes: list[str], every: int = 1, channel_order: str = "rgb",
                 inputs: list | tuple = ()):
        self.folder = Path(folder)
        why = refusal(self.folder, list(inputs))
        if why:
            raise AnnotateError(why)
        self.classes = list(classes)
        self.every = every
        self.channel_order = channel_order
        self._marks: dict[int, dict[int | None, list[Mark]]] = defaultdict(lambda: defaultdict(list))
        self._names: set[str] = set()
        self.written: list[Path] = []
        self.video_codecs: list[str] = []          # the codec of each video written, in order

    @property
    def video_note(self) -> str:
        """How to get browser-playable videos when some were not written as H.264 ('' otherwise)."""
        others = sorted(set(self.video_codecs) - {BROWSER_CODEC})
        return NOT_BROWSER_NOTE.format(codec=" and ".join(others)) if others else ""

    def collect(self, chunk: pd.DataFrame, source_ids: list[int]) -> None:
        """Keep the marks of a chunk's rows (its source ids, row by row)."""
        ids = np.asarray(source_ids)
        for n in dict.fromkeys(source_ids):
            for frame, marks in marks_of(chunk[ids == n], self.classes).items():
                self._marks[n][frame].extend(marks)

    def draw_all(self, sources: list[Source]) -> list[Path]:
        """Draw every source (its rows all collected); AnnotateError, one line, at the first
        drawing that cannot be written (what was written before it stays)."""
        for n, source in enumerate(sources):
            self.finish(n, source)
        return self.written

    def finish(self, n: int, source: Source) -> Path | None:
        """Draw source n; the written file, or None when it has no picture."""
        marks = self._marks.pop(n, {})
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if source.kind == "video":
                path = self._video(source, marks)
            elif source.kind in ("image", "array"):
                path = self._image(source, marks.get(None, []))
            else:
                path = None
        except OSError as err:
            raise AnnotateError(f"--annotate {self.folder}: cannot write the drawing of {source.name} "
                                f"({err.strerror or type(err).__name__})") from None
        if path is not None:
            self.written.append(path)
        return path

    def _target(self, source: Source, suffix: str) -> Path:
        """A name of `folder` that is free (on disk and in this run): <stem><suffix>, else
        <stem>.annotated<suffix>, <stem>.annotated-2<suffix>, ..."""
        stem = safe_stem(source.name)
        k = 0
        while True:
            name = (f"{stem}{suffix}" if k == 0 else f"{stem}.annotated{suffix}" if k == 1
                    else f"{stem}.annotated-{k}{suffix}")
            k += 1
            if name not in self._names and not os.path.lexists(self.folder / name):
                self._names.add(name)
                return self.folder / name

    def _publish(self, source: Source, suffix: str, write) -> Path:
        """Give what `write(target)` wrote a free name; a name taken meanwhile: the next one."""
        while True:
            target = self._target(source, suffix)
            try:
                write(target)
                return target
            except FileExistsError:
                continue

    def _image(self, source: Source, marks: list[Mark]) -> Path | None:
        canvas = colour_image(source, self.channel_order)
        if canvas is None:
            return None
        jpeg = source.kind == "image" and Path(source.path or "").suffix.lower() in (".jpg", ".jpeg")
        suffix = ".jpg" if jpeg else ".png"
        ok, buf = cv2.imencode(suffix, draw(canvas, marks))
        if not ok:
            raise AnnotateError(f"{source.name}: the annotated image could not be encoded")
        data = buf.tobytes()
        return self._publish(source, suffix, lambda target: atomicio.write_new(target, data))

    def _video(self, source: Source, marks: dict[int | None, list[Mark]]) -> Path | None:
        try:
            with open_video(source.path) as cap:
                fps = frame_rate(cap) if cap.isOpened() else None
        except (RejectError, OSError):
            return None                      # its row says why; there is nothing to draw
        writer = suffix = tmp = None
        try:
            for index, image in colour_video_frames(source, self.every):
                if image is None:
                    continue
                if writer is None:
                    rate = (fps or DEFAULT_FPS) / self.every
                    writer, suffix, tmp = self._open_writer(source, rate, image.shape[1], image.shape[0])
                writer.write(draw(image, marks.get(index, [])))
            if writer is None:
                return None
            writer.release()
            return self._publish(source, suffix, lambda target: atomicio.publish_new(tmp, target))
        finally:
            if writer is not None:
                writer.release()
                Path(tmp).unlink(missing_ok=True)

    def _open_writer(self, source: Source, fps: float, width: int, height: int):
        """An open video writer on a temporary file of the folder: (writer, suffix, temporary path)."""
        for fourcc, suffix in VIDEO_WRITERS:
            if not encoder_opens(fourcc, suffix):
                continue
            tmp = Path(f"{atomicio.temp_path(self.folder / (safe_stem(source.name) + suffix))}{suffix}")
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
            if writer.isOpened():
                self.video_codecs.append(fourcc)
                return writer, suffix, tmp
            writer.release()
            tmp.unlink(missing_ok=True)
        raise AnnotateError(f"{source.name}: OpenCV can write no video in {self.folder} (tried "
                            f"{', '.join(f'{c} {s}' for c, s in VIDEO_WRITERS)})")
