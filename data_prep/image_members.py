"""Images kept inside another file (FER2013: pixel rows of a CSV), addressed as
`<container file>#<member>` (e.g. `/data/fer2013.csv#row=000123`), and the loaders, registered by
the container's suffix, that decode them (data_prep.csv_images). data_prep.image_io reads both
kinds of path, so preprocessing has one code path.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from partfer.data_prep.registry import Registry

MEMBER_SEPARATOR = "#"
# (container path, member) -> uint8 (H, W) grayscale, or RejectError naming the member.
MemberLoader = Callable[[str, str], np.ndarray]
MEMBER_LOADERS: Registry[MemberLoader] = Registry("image container suffix")


def register_member_loader(suffix: str) -> Callable[[MemberLoader], MemberLoader]:
    """Decorator: decode `<file with this suffix>#<member>` paths with `fn(container, member)`."""
    return MEMBER_LOADERS.decorator(suffix.lower())


def member_path(container: str | os.PathLike, member: str) -> str:
    """The path that names one image stored inside `container`."""
    return f"{container}{MEMBER_SEPARATOR}{member}"
