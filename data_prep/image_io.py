"""Read any image file as 8-bit grayscale, explicitly.

Data sets mix palette TIFFs (JAFFE), RGB(A) PNG/JPEG and occasional 16-bit files; a silent
cv2.IMREAD_GRAYSCALE would hide how each was converted, and some palette TIFFs defeat OpenCV, so
every case is handled here, with Pillow as the fallback decoder.

Some data sets keep their images inside another file (FER2013: pixel rows of a CSV). Such an image
is addressed as `<container file>#<member>` and decoded by the loader registered for the
container's suffix (data_prep.image_members), so preprocessing has one code path for both kinds.
"""
from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np

from partfer.data_prep import csv_images  # noqa: F401  (registers the loader of .csv containers)
from partfer.data_prep.errors import RejectError
from partfer.data_prep.file_names import name_text
from partfer.data_prep.image_members import MEMBER_LOADERS, MEMBER_SEPARATOR

# Decoding allocates width x height x channels bytes (x2 for 16-bit) before any check can run.
# The largest images the supported data sets hold are a few megapixels (movie frames); 50
# megapixels (e.g. 8660x5773) keeps one decode under ~400 MB at 16-bit RGBA on a worker.
MAX_PIXELS = 50_000_000

def split_member_path(path: str | os.PathLike) -> tuple[str, str] | None:
    """(container, member) when `path` names an image inside a file a loader knows, else None.

    A real file whose name contains '#' stays a plain file: it is checked on disk first.
    """
    text = str(path)
    if MEMBER_SEPARATOR not in text or os.path.exists(text):
        return None
    container, _, member = text.rpartition(MEMBER_SEPARATOR)
    if Path(container).suffix.lower() not in MEMBER_LOADERS:
        return None
    return container, member


def load_grayscale(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 (H, W) grayscale; RejectError('unreadable image: ...') when no decoder can read it,
    and RejectError naming the file when it is no regular file or has more than max_pixels."""
    member = split_member_path(path)
    if member is not None:
        container, name = member
        return MEMBER_LOADERS.get(Path(container).suffix.lower())(container, name)
    data = read_image_file(path, max_pixels)
    image = decode(data, cv2.IMREAD_UNCHANGED)
    if image is not None:
        return to_gray_uint8(image, channel_order="bgr")
    try:
        return load_with_pillow(data)
    except RejectError:
        raise
    except Exception as err:   # Pillow raises many types (UnidentifiedImageError, OSError, ...)
        raise RejectError(f"unreadable image: {shown_name(path)} ({type(err).__name__}: {err})") from None


def load_colour(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """uint8 (H, W, 3) BGR picture of an image file (its grey levels when OpenCV cannot decode
    its colours); the same checks and RejectErrors as load_grayscale."""
    data = read_image_file(path, max_pixels)
    image = decode(data, cv2.IMREAD_COLOR)
    if image is not None:
        return image
    try:
        gray = load_with_pillow(data)
    except RejectError:
        raise
    except Exception as err:   # noqa: BLE001 - as in load_grayscale
        raise RejectError(f"unreadable image: {shown_name(path)} ({type(err).__name__}: {err})") from None
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)


def shown_name(path: str | os.PathLike) -> str:
    """The file's base name as UTF-8 text (undecodable bytes as \\xNN), for messages."""
    return name_text(os.path.basename(os.fspath(path)))


def check_regular_file(path: str | os.PathLike) -> os.stat_result:
    """The file's stat; RejectError when it is not a regular file. A FIFO, socket or device
    named like an image is never opened: reading a FIFO blocks until someone writes to it."""
    try:
        info = os.stat(path)
    except OSError as err:
        raise RejectError(f"unreadable image: {shown_name(path)} ({type(err).__name__}: "
                          f"{err.strerror or err})") from None
    if not stat.S_ISREG(info.st_mode):
        raise RejectError(f"not a regular file: {shown_name(path)} is a {file_kind(info.st_mode)}")
    return info


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, kind in ((stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISDIR, "folder")):
        if test(mode):
            return kind
    return "special file"


def read_image_file(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> bytes:
    """The bytes of an image file whose header says it has at most max_pixels pixels.

    Decoding allocates what the header claims (a 20000x20000 PNG of a few kB takes GBs), so the
    size is read from the header first (Pillow reads headers lazily) and a file whose size no
    header reader knows is refused rather than decoded blind. Bytes, not a path, go to the
    decoders: OpenCV's C++ side crashes on a path that is not valid UTF-8.
    """
    check_regular_file(path)
    try:
        # O_NONBLOCK: a file swapped for a FIFO after the check does not block the open, and the
        # open file itself is checked again
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RejectError(f"not a regular file: {shown_name(path)} changed while it was read")
            width, height = header_size(fh, path, max_pixels)
            if width * height > max_pixels:
                raise RejectError(f"image too large: {shown_name(path)} is {width}x{height} "
                                  f"({width * height / 1e6:.1f} megapixels; the cap is {max_pixels / 1e6:g})")
            fh.seek(0)
            return fh.read()
    except OSError as err:
        raise RejectError(f"unreadable image: {shown_name(path)} ({type(err).__name__}: "
                          f"{err.strerror or err})") from None


def header_size(fh: BinaryIO, path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # our cap decides
            with Image.open(fh) as im:
                return im.size
    except Image.DecompressionBombError as err:      # Pillow's own cap, far above ours
        pixels = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(pixels.group(1)) / 1e6:.1f} megapixels" if pixels else "above Pillow's limit"
        raise RejectError(f"image too large: {shown_name(path)} is {size} (the cap is "
                          f"{max_pixels / 1e6:g})") from None
    except Image.UnidentifiedImageError:
        raise RejectError(f"unreadable image: {shown_name(path)} (not a known image format, or its "
                          f"header is damaged)") from None
    except Exception as err:   # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise RejectError(f"unreadable image: {shown_name(path)} (its header gives no image size: "
                          f"{type(err).__name__}: {err})") from None


def decode(data: bytes, flags: int) -> np.ndarray | None:
    """OpenCV's decoding of a file's bytes; None when OpenCV cannot decode them."""
    if not data:
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error:
        return None


def load_with_pillow(data: bytes | str | os.PathLike) -> np.ndarray:
    """Pillow decoding of a file's bytes (or of a file, read as read_image_file does), for files
    OpenCV cannot read (some TIFF variants, palette quirks)."""
    from PIL import Image

    if not isinstance(data, bytes):
        data = read_image_file(data)
    with Image.open(io.BytesIO(data)) as im:
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
