"""Exceptions of data_prep, split by who must act on them.

Per-file problems (RejectError) become rows of rejects.csv; whole-run problems (the others)
stop the run with a one-line message naming the path and the reason.
"""
from __future__ import annotations


class RejectError(ValueError):
    """One input file cannot be used (unreadable, no face, unknown label...): record it, go on."""


class DatasetRootError(FileNotFoundError):
    """A data set root is missing, not a folder, or empty."""


class ModelFileError(FileNotFoundError):
    """A model file (SSD, dlib ERT, FAN weights) is not on disk; the message says how to get it."""


class UnknownNameError(ValueError):
    """No reader, detector or annotator is registered under the requested name."""


class EmptyDatasetError(ValueError):
    """A data set yielded nothing usable (no records after reading, or every image rejected)."""


class PreparedDataError(ValueError):
    """A prepared-data directory is unfinished or does not follow data_prep.schema."""
