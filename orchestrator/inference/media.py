"""Inputs of `partfer predict`: image files, folders (walked recursively), video files, arrays.

Every input becomes a stream of grayscale frames; a video is read one frame at a time (and only
every Nth frame is decoded), so memory does not grow with its length. An input that cannot be
used yields one frame carrying the reason instead of pixels: the caller reports it as a row.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from partfer.data_prep.errors import RejectError
from partfer.data_prep.file_names import is_utf8_name
from partfer.data_prep.image_io import check_regular_file, load_colour, load_grayscale, shown_name, to_gray_uint8

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".pgm", ".ppm", ".pbm",
                              ".pnm", ".webp", ".gif", ".jp2"})
VIDEO_EXTENSIONS = frozenset({".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                              ".flv", ".3gp", ".ogv"})


@dataclass(frozen=True)
class Source:
    """One input: what the output's `input` column calls it, and how to read it."""
    name: str
    kind: str                         # image | video | array | invalid
    path: str | None = None
    array: np.ndarray | None = None
    reason: str = ""                  # kind == invalid: why it cannot be read


@dataclass(frozen=True)
class Frame:
    """A grayscale frame of a source, or the reason there is none."""
    source: Source
    index: int | None                 # frame number in a video; None for a still image
    gray: np.ndarray | None           # uint8 (H, W)
    error: str = ""
    time: float | None = None         # seconds into a video (frame / its frame rate); None elsewhere


def _file_source(path: Path, name: str, walked: bool) -> Source:
    ext = path.suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return Source(name, "video", str(path))
    if ext in IMAGE_EXTENSIONS or not walked:
        return Source(name, "image", str(path))        # a file named explicitly is always tried
    return Source(name, "invalid", str(path), reason=f"not an image or video file ({ext or 'no extension'})")


def _walk(folder: Path) -> list[Path]:
    """Files under a folder, sorted by their path inside it; hidden files and folders are skipped."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / name for name in files if not name.startswith("."))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def expand_inputs(inputs: Sequence[str | os.PathLike | np.ndarray]) -> list[Source]:
    """Paths, folders and arrays -> the list of sources, in the order given (folders sorted)."""
    sources: list[Source] = []
    for i, item in enumerate(inputs):
        if isinstance(item, np.ndarray):
            sources.append(Source(f"array:{i}", "array", array=item))
            continue
        path = Path(item)
        if path.is_dir():
            found = _walk(path)
            if not found:
                sources.append(Source(str(path), "invalid", str(path), reason="empty folder: no file to read"))
            sources.extend(_file_source(p, str(p), walked=True) for p in found)
        elif path.exists():                 # a FIFO or device too: reading it says what it is
            sources.append(_file_source(path, str(path), walked=False))
        else:
            sources.append(Source(str(path), "invalid", str(path), reason="no such file or folder"))
    return sources


GREY_PIL_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})


def image_input(image, channel_order: str = "rgb") -> tuple[str | np.ndarray, str]:
    """One image as predict takes it, and its channel order: a path (str or Path) as given, a numpy
    array in `channel_order`, a PIL image as an RGB (or grey) array. TypeError for anything else."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image), channel_order
    if isinstance(image, np.ndarray):
        return image, channel_order
    if callable(getattr(image, "convert", None)) and isinstance(getattr(image, "mode", None), str):
        # a PIL image, recognised without importing PIL (it is not a dependency)
        return np.asarray(image.convert("L" if image.mode in GREY_PIL_MODES else "RGB")), "rgb"
    raise TypeError(f"an image is a path, a numpy array or a PIL image, not {type(image).__name__}")


# Frames a video's container may declare lost before the rest are summed up in one row: a header
# can claim billions of frames, and one row each would be an output without end.
MAX_LOST_FRAME_ROWS = 1000


@contextmanager
def open_video(path: str) -> Iterator[cv2.VideoCapture]:
    """An OpenCV capture of a video file; RejectError when it is not a regular file.

    OpenCV's C++ side takes only a path and crashes on one that is not valid UTF-8: such a file is
    opened here and handed over as /proc/self/fd/N, an ASCII path to the same open file.
    """
    check_regular_file(path)
    fd = None
    target = path
    if not is_utf8_name(path):
        fd = os.open(os.fsencode(path), os.O_RDONLY | os.O_NONBLOCK)
        target = f"/proc/self/fd/{fd}"
    cap = cv2.VideoCapture(target)
    try:
        yield cap
    finally:
        cap.release()
        if fd is not None:
            os.close(fd)


def declared_frames(cap: "cv2.VideoCapture") -> int:
    """The frame count the container declares (0 when it does not say)."""
    count = float(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0.0)
    return int(count) if math.isfinite(count) and count > 0 else 0


def estimated_frames(source: Source, every: int) -> int:
    """How many frames `frames` will yield (a video's frame count is its header's claim)."""
    if source.kind != "video":
        return 1
    try:
        with open_video(source.path) as cap:
            count = declared_frames(cap) if cap.isOpened() else 0
    except (RejectError, OSError):
        return 1
    return max(1, math.ceil(count / every)) if count > 0 else 1


def frames(source: Source, every: int = 1, channel_order: str = "rgb") -> Iterator[Frame]:
    """The source's grayscale frames: one for an image or array, every `every`-th of a video.

    channel_order says how colour arrays passed in memory are laid out (files are decoded
    knowing their own order).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    if source.kind == "invalid":
        yield Frame(source, None, None, source.reason)
    elif source.kind == "image":
        try:
            yield Frame(source, None, load_grayscale(source.path))
        except RejectError as err:
            yield Frame(source, None, None, str(err))
    elif source.kind == "array":
        try:
            yield Frame(source, None, to_gray_uint8(np.asarray(source.array), channel_order=channel_order))
        except RejectError as err:
            yield Frame(source, None, None, str(err))
    elif source.kind == "video":
        yield from _video_frames(source, every)
    else:
        raise ValueError(f"unknown source kind {source.kind!r}")


def _video_frames(source: Source, every: int) -> Iterator[Frame]:
    try:
        with open_video(source.path) as cap:
            if not cap.isOpened():
                yield Frame(source, None, None, f"unreadable video: {shown_name(source.path)}")
                return
            fps = frame_rate(cap)
            declared = declared_frames(cap)
            index = 0
            while cap.grab():                       # grab without decoding; decode only kept frames
                if index % every == 0:
                    ok, image = cap.retrieve()
                    time = index / fps if fps else None
                    if ok and image is not None:
                        yield Frame(source, index, to_gray_uint8(image, channel_order="bgr"), time=time)
                    else:
                        yield Frame(source, index, None, f"frame {index} could not be decoded", time=time)
                index += 1
            if index == 0:
                yield Frame(source, None, None, f"unreadable video: no frame could be read from "
                                                f"{shown_name(source.path)}")
            elif index < declared:
                yield from _lost_frames(source, index, declared, every, fps)
    except (RejectError, OSError) as err:
        reason = str(err) if isinstance(err, RejectError) else \
            f"unreadable video: {shown_name(source.path)} ({type(err).__name__}: {err.strerror or err})"
        yield Frame(source, None, None, reason)


def _lost_frames(source: Source, first: int, declared: int, every: int, fps: float | None) -> Iterator[Frame]:
    """An error frame for each kept frame from `first` on that the container declares but the
    stream did not deliver (damaged data ends the stream early); past MAX_LOST_FRAME_ROWS of
    them, one frame stands for the rest."""
    why = f"could not be decoded: the stream ended after {first} of the {declared} frames its container declares"
    kept = range(first + (-first) % every, declared, every)
    for n, index in enumerate(kept):
        time = index / fps if fps else None
        if n == MAX_LOST_FRAME_ROWS:
            rest = len(kept) - n
            yield Frame(source, index, None, f"frames {index}..{declared - 1} ({rest} kept frames) {why}",
                        time=time)
            return
        yield Frame(source, index, None, f"frame {index} {why}", time=time)


def frame_rate(cap: "cv2.VideoCapture") -> float | None:
    """The container's frames per second, None when it does not say (timestamps are then unknown)."""
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    return fps if math.isfinite(fps) and 0.0 < fps < 10000.0 else None


def colour_image(source: Source, channel_order: str = "rgb") -> np.ndarray | None:
    """A BGR uint8 picture of an image or array source to draw on (its decoded colours, else its
    grey levels); None when it cannot be read."""
    try:
        if source.kind == "array":
            array = np.asarray(source.array)
            if array.ndim == 3 and array.shape[2] in (3, 4) and array.dtype == np.uint8:
                code = cv2.COLOR_RGB2BGR if channel_order == "rgb" else None
                colour = np.ascontiguousarray(array[:, :, :3])
                return cv2.cvtColor(colour, code) if code is not None else colour
            return cv2.cvtColor(to_gray_uint8(array, channel_order=channel_order), cv2.COLOR_GRAY2BGR)
        if source.kind == "image":
            return load_colour(source.path)
    except (RejectError, cv2.error):
        return None
    return None


def colour_video_frames(source: Source, every: int = 1) -> Iterator[tuple[int, np.ndarray | None]]:
    """(frame index, BGR frame or None) of every `every`-th frame of a video: the frames
    `frames` classified, decoded again in colour for drawing."""
    try:
        with open_video(source.path) as cap:
            index = 0
            while cap.isOpened() and cap.grab():
                if index % every == 0:
                    ok, image = cap.retrieve()
                    yield index, image if ok else None
                index += 1
    except (RejectError, OSError):
        return
