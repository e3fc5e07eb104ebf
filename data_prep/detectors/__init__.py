"""Face detectors behind one interface, registered by name (ssd, hog, none)."""
from partfer.data_prep.detectors.base import (
    Detector, DetectorSpec, get_detector_spec, list_detectors, load_detector, register_detector,
)
from partfer.data_prep.detectors import hog, none, ssd  # noqa: F401  (the built-in detectors)

__all__ = ["Detector", "DetectorSpec", "get_detector_spec", "list_detectors", "load_detector",
           "register_detector"]
