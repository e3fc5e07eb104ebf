"""Read any image file as 8-bit grayscale, explicitly.

Data sets mix palette TIFFs (JAFFE), RGB(A) PNG/JPEG and occasional 16-bit files; a silent
cv2.IMREAD_GRAYSCALE would hide how each was converted, and some palette TIFFs defeat OpenCV, so
every case is handled here, with Pillow as the fallback decoder.

Some data sets keep their images inside another file (FER2013: pixel rows of a CSV). Such an image
is addressed as `<container file>#<member>` (e.g. `/data/fer2013.csv#row=000123`) and decoded by a
loader registered for the container's suffix, so preprocessing has one code path for both kinds.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from partfer.data_prep.errors import RejectError


MEMBER_SEPARATOR = "#"
# (container path, member) -> uint8 (H, W) grayscale, or RejectError naming the member.
MemberLoader = Callable[[str, str], np.ndarray]
_MEMBER_LOADERS: dict[str, MemberLoader] = {}


def register_member_loader(suffix: str) -> Callable[[MemberLoader], MemberLoader]:
    """Decorator: decode `<file with this suffix>#<member>` paths with `fn(container, member)`."""
    def decorate(fn: MemberLoader) -> MemberLoader:
        _MEMBER_LOADERS[suffix.lower()] = fn
        return fn
    return decorate


def member_path(container: str | os.PathLike, member: str) -> str:
    """The path that names one image stored inside `container`."""
    return f"{container}{MEMBER_SEPARATOR}{member}"


def split_member_path(path: str | os.PathLike) -> tuple[str, str] | None:
    """(container, member) when `path` names an image inside a file a loader knows, else None.

    A real file whose name contains '#' stays a plain file: it is checked on disk first.
    """
    text = str(path)
    if MEMBER_SEPARATOR not in text or os.path.exists(text):
        return None
    container, _, member = text.rpartition(MEMBER_SEPARATOR)
    if Path(container).suffix.lower() not in _member_loaders():
        return None
    return container, member


def _member_loaders() -> dict[str, MemberLoader]:
    # Imported here, not at module top: the loader modules import this one to register.
    from partfer.data_prep import csv_images  # noqa: F401
    return _MEMBER_LOADERS


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """uint8 (H, W) grayscale; RejectError('unreadable image: ...') when no decoder can read it."""
    member = split_member_path(path)
    if member is not None:
        container, name = member
        return _member_loaders()[Path(container).suffix.lower()](container, name)
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is not None:
        return to_gray_uint8(image, channel_order="bgr")
    try:
        return load_with_pillow(path)
    except RejectError:
        raise
    except Exception as err:   # Pillow raises many types (UnidentifiedImageError, OSError, ...)
        raise RejectError(f"unreadable image: {os.path.basename(path)} ({type(err).__name__}: {err})") from None


def load_with_pillow(path: str | os.PathLike) -> np.ndarray:
    """Pillow decoding, for files OpenCV cannot read (some TIFF variants, palette quirks)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        if im.mode in ("P", "PA"):                    # palette: map indices through the palette
            im = im.convert("RGBA" if "transparency" in im.info or im.mode == "PA" else "RGB")
        if im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGB")
        array = np.asarray(im)
    return to_gray_uint8(array, channel_order="rgb")


def to_gray_uint8(image: np.ndarray, channel_order: str = "bgr") -> np.ndarray:
    """Any decoded array (gray, gray+alpha, colour, colour+alpha; 8/16-bit/float) -> uint8 gray."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 2:                             # gray + alpha: the alpha is not the face
            image = image[:, :, 0]
        elif channels in (3, 4):
            colour = np.ascontiguousarray(image[:, :, :3])
            code = cv2.COLOR_BGR2GRAY if channel_order == "bgr" else cv2.COLOR_RGB2GRAY
            image = cv2.cvtColor(_to_uint8(colour), code)
        else:
            raise RejectError(f"unreadable image: unsupported channel count {channels}")
    if image.ndim != 2 or image.size == 0:
        raise RejectError(f"unreadable image: unsupported shape {image.shape}")
    return _to_uint8(image)


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Scale 16-bit by 1/257 (full range maps to full range), floats by their [0,1] or [0,255] range."""
    if image.dtype == np.uint8:
        return image
    if image.dtype == bool:
        return image.astype(np.uint8) * 255
    if image.dtype == np.uint16:
        return np.round(image / 257.0).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        finite = np.nan_to_num(image.astype(np.float64))
        scale = 255.0 if finite.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.round(finite * scale), 0, 255).astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        if info.min < 0 or info.max > 65535:
            lo, hi = float(image.min()), float(image.max())
            return np.round((image - lo) * (255.0 / max(hi - lo, 1.0))).astype(np.uint8)
        return np.clip(image, 0, 255).astype(np.uint8)
    raise RejectError(f"unreadable image: unsupported pixel type {image.dtype}")
