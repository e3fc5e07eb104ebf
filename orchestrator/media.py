"""Inputs of `partfer predict`: image files, folders (walked recursively), video files, arrays.

Every input becomes a stream of grayscale frames; a video is read one frame at a time (and only
every Nth frame is decoded), so memory does not grow with its length. An input that cannot be
used yields one frame carrying the reason instead of pixels: the caller reports it as a row.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from data_prep.errors import RejectError
from data_prep.image_io import load_grayscale, to_gray_uint8

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
            sources.extend(_file_source(p, str(p), walked=True) for p in _walk(path))
        elif path.is_file():
            sources.append(_file_source(path, str(path), walked=False))
        else:
            sources.append(Source(str(path), "invalid", str(path), reason="no such file or folder"))
    return sources


def estimated_frames(source: Source, every: int) -> int:
    """How many frames `frames` will yield (a video's frame count is its header's claim)."""
    if source.kind != "video":
        return 1
    cap = cv2.VideoCapture(source.path)
    try:
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
    finally:
        cap.release()
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
    cap = cv2.VideoCapture(source.path)
    try:
        if not cap.isOpened():
            yield Frame(source, None, None, f"unreadable video: {os.path.basename(source.path)}")
            return
        index = 0
        while cap.grab():                       # grab without decoding; decode only kept frames
            if index % every == 0:
                ok, image = cap.retrieve()
                if ok and image is not None:
                    yield Frame(source, index, to_gray_uint8(image, channel_order="bgr"))
                else:
                    yield Frame(source, index, None, f"frame {index} could not be decoded")
            index += 1
        if index == 0:
            yield Frame(source, None, None, f"unreadable video: no frame could be read from "
                                            f"{os.path.basename(source.path)}")
    finally:
        cap.release()
