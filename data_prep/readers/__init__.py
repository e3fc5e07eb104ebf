"""Readers: one module per data set layout, each registering itself by name (see base.py)."""
from partfer.data_prep.readers.base import (
    IMAGE_EXTENSIONS, ReadResult, Record, Reject, get_reader, known_layouts, read_dataset,
    register_reader,
)
from partfer.data_prep.errors import DatasetRootError

__all__ = [
    "IMAGE_EXTENSIONS", "DatasetRootError", "ReadResult", "Record", "Reject", "get_reader",
    "known_layouts", "read_dataset", "register_reader",
]
