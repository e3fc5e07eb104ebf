"""Readers: one module per data set layout, each registering itself by name (see base.py).

Importing any reader imports this package first, and so registers every layout below.
"""
from partfer.data_prep.readers.base import (
    IMAGE_EXTENSIONS, ReadResult, Record, Reject, get_reader, known_layouts, read_dataset,
    register_reader,
)
from partfer.data_prep.errors import DatasetRootError
from partfer.data_prep.readers import ckplus, fer2013, folder, jaffe, sfew  # noqa: F401  (the built-in layouts)

__all__ = [
    "IMAGE_EXTENSIONS", "DatasetRootError", "ReadResult", "Record", "Reject", "get_reader",
    "known_layouts", "read_dataset", "register_reader",
]
