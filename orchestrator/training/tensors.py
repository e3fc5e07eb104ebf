"""A prepared data set resident on the training device: uint8 images at the network's input size.

Loaded once per process and reused by every pack of that data set (CK+ at 160x160 is ~33 MB),
so training never waits on a data loader.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from partfer.data_prep.prepared import PreparedData, load_prepared
from partfer.data_prep.schema import SUCCESS_MARKER
from partfer.orchestrator.storage.store import local_dir


@dataclass
class DeviceData:
    prepared: PreparedData
    images: torch.Tensor       # (N, S, S) uint8 on device
    landmarks: torch.Tensor    # (N, 68, 2) float32 in [0, 1]
    labels: torch.Tensor       # (N,) int64 index into `classes`; -1 where the label is not a class
    classes: list[str]

    @property
    def n(self) -> int:
        return self.images.shape[0]


_CACHE: dict[tuple, DeviceData] = {}
_CACHE_LOCK = threading.Lock()      # packs of one process may run in threads (inline executor)


def resize_uint8(images: np.ndarray, size: int, chunk: int = 512) -> torch.Tensor:
    """Bilinear resize (antialiased when shrinking) of (N, H, W) uint8 to (N, size, size) uint8."""
    out = torch.empty((images.shape[0], size, size), dtype=torch.uint8)
    for start in range(0, images.shape[0], chunk):
        block = torch.from_numpy(images[start:start + chunk]).float().unsqueeze(1)
        if block.shape[-1] != size or block.shape[-2] != size:
            shrinking = block.shape[-1] > size
            block = F.interpolate(block, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=shrinking)
        out[start:start + chunk] = block.squeeze(1).round().clamp(0, 255).to(torch.uint8)
    return out


def device_data(path: str, image_size: int, device: str, classes: list[str] | None = None) -> DeviceData:
    """The prepared data set at `path` (a directory or a URI: read from this node's copy) on
    `device`, labels indexed by `classes` (default: its own)."""
    key = (path, image_size, device, tuple(classes) if classes else None)
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _load(path, image_size, device, classes)
        return _CACHE[key]


def _load(path: str, image_size: int, device: str, classes: list[str] | None) -> DeviceData:
    prepared = load_prepared(local_dir(path, SUCCESS_MARKER))
    classes = list(classes or prepared.classes)
    index = {c: i for i, c in enumerate(classes)}
    labels = torch.tensor([index.get(lbl, -1) for lbl in prepared.labels], dtype=torch.int64)
    data = DeviceData(
        prepared=prepared,
        images=resize_uint8(prepared.images, image_size).to(device),
        # rows without landmarks (NaN; never landmark targets, see plan) as zeros: no NaN can reach a sum
        landmarks=torch.from_numpy(np.nan_to_num(np.ascontiguousarray(prepared.landmarks, dtype=np.float32))).to(device),
        labels=labels.to(device),
        classes=classes,
    )
    if data.images.is_cuda:
        # the copies ran on this thread's stream; packs on other streams read them next
        torch.cuda.current_stream(data.images.device).synchronize()
    return data
