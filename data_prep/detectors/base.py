"""The face-detector interface and registry (name -> factory + what the detector is good at).

A detector is loaded once per process and reused for every image (the SSD and HOG models take
longer to load than to run), so `load_detector` caches instances by name and the settings it uses.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from partfer.data_prep.face_crop import Detection
from partfer.data_prep.registry import Registry
from partfer.data_prep.settings import PrepSettings


class Detector(Protocol):
    """Training keeps one face per image (`detect`); prediction wants every face (`detect_all`)."""
    name: str

    def detect(self, image: np.ndarray) -> Detection | None:
        """The most confident face in a uint8 grayscale image, or None when there is none."""

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Every face in a uint8 grayscale image, each once, most confident first (may be empty)."""


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    description: str                       # capabilities, shown by list_detectors()
    factory: Callable[..., Detector]       # called with the settings named in `uses`
    uses: tuple[str, ...] = ()             # PrepSettings fields the detector depends on


DETECTORS: Registry[DetectorSpec] = Registry("face detector")


def register_detector(name: str, description: str, uses: tuple[str, ...] = ()):
    """Decorator for a factory `fn(**{field: value for field in uses}) -> Detector`."""
    def decorate(factory):
        DETECTORS.add(name, DetectorSpec(name, description, factory, uses))
        return factory
    return decorate


def list_detectors() -> dict[str, str]:
    """name -> description of what it needs and where it works well."""
    return {name: spec.description for name, spec in DETECTORS.items()}


def get_detector_spec(name: str) -> DetectorSpec:
    return DETECTORS.get(name)


def load_detector(name: str, settings: PrepSettings = PrepSettings()) -> Detector:
    """A ready detector, built once per process for each (name, relevant settings)."""
    spec = get_detector_spec(name)
    return _cached(name, tuple((field, getattr(settings, field)) for field in spec.uses))


@functools.lru_cache(maxsize=None)
def _cached(name: str, options: tuple) -> Detector:
    return get_detector_spec(name).factory(**dict(options))
