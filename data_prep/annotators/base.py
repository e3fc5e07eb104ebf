"""The landmark-annotator interface and registry (dlib ERT, FAN, the data set's own points).

An annotator returns 68 points in CROP pixels for a FaceCrop; the preprocessing normalises them.
Like detectors, annotators are built once per process and cached.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from partfer.data_prep.face_crop import FaceCrop
from partfer.data_prep.readers.base import Record
from partfer.data_prep.registry import Registry
from partfer.data_prep.settings import PrepSettings


class Annotator(Protocol):
    name: str

    def annotate(self, face: FaceCrop, record: Record) -> np.ndarray:
        """(68, 2) float points in crop pixels; RejectError for a per-file problem."""


@dataclass(frozen=True)
class AnnotatorSpec:
    name: str
    description: str
    factory: Callable[..., Annotator]
    uses: tuple[str, ...] = ()


ANNOTATORS: Registry[AnnotatorSpec] = Registry("landmark annotator")


def register_annotator(name: str, description: str, uses: tuple[str, ...] = ()):
    """Decorator for a factory `fn(**{field: value for field in uses}) -> Annotator`."""
    def decorate(factory):
        ANNOTATORS.add(name, AnnotatorSpec(name, description, factory, uses))
        return factory
    return decorate


def list_annotators() -> dict[str, str]:
    return {name: spec.description for name, spec in ANNOTATORS.items()}


def get_annotator_spec(name: str) -> AnnotatorSpec:
    return ANNOTATORS.get(name)


def load_annotator(name: str, settings: PrepSettings = PrepSettings()) -> Annotator:
    """A ready annotator, built once per process for each (name, relevant settings)."""
    spec = get_annotator_spec(name)
    return _cached(name, tuple((field, getattr(settings, field)) for field in spec.uses))


@functools.lru_cache(maxsize=None)
def _cached(name: str, options: tuple) -> Annotator:
    return get_annotator_spec(name).factory(**dict(options))
