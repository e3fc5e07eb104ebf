"""Landmark annotators behind one interface, registered by name (dlib, fan, dataset)."""
from partfer.data_prep.annotators.base import (
    Annotator, AnnotatorSpec, get_annotator_spec, list_annotators, load_annotator, register_annotator,
)
from partfer.data_prep.annotators import dlib_ert, fan, ground_truth  # noqa: F401  (the built-in annotators)

__all__ = ["Annotator", "AnnotatorSpec", "get_annotator_spec", "list_annotators", "load_annotator",
           "register_annotator"]
