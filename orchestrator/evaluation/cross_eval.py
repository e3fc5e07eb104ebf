"""Cross-data-set tests (paper Section IV-D, Table III): finished models of one data set applied,
without retraining, to every image of another. Classes are matched by name; a class the models
never learned (CK+'s contempt for SFEW models) keeps its true label in the predictions, so the
results can drop and count it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from partfer.orchestrator.records import PREDICTION_SCHEMA
from partfer.orchestrator.storage.store import atomic_write_bytes, exists, join, local_file
from partfer.orchestrator.training.tensors import device_data


@dataclass(frozen=True)
class CrossEvalJob:
    train_dataset: str
    eval_dataset: str
    eval_prepared: str
    classes: tuple[str, ...]          # the trained data set's classes (probability order)
    model_dirs: tuple[str, ...]       # final-stage outputs (checkpoint.pt) of the trained models
    out_paths: tuple[str, ...]        # one predictions file per model
    model_cfg: dict
    image_size: int
    device: str
    precision: str


def _parquet_bytes(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


@torch.no_grad()
def run_cross_eval(job: CrossEvalJob, chunk: int = 256) -> int:
    """Predict every image of the evaluation set with each model; returns files written."""
    from partfer.models.config import ArchConfig
    from partfer.models.subnet import SubNetwork
    from partfer.orchestrator.training.augment import normalise_pixels

    todo = [i for i, p in enumerate(job.out_paths) if not exists(p)]
    if not todo:
        return 0
    data = device_data(job.eval_prepared, job.image_size, job.device, list(job.classes))
    prepared = data.prepared
    arch = ArchConfig.from_config(job.model_cfg)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16)
                if job.precision == "bf16" and job.device.startswith("cuda")
                else torch.autocast("cpu", enabled=False))
    for i in todo:
        state = torch.load(local_file(join(job.model_dirs[i], "checkpoint.pt")), map_location="cpu",
                           weights_only=True)
        n_landmarks = state["landmark_head.fc2.bias"].shape[0] if "landmark_head.fc2.bias" in state else None
        net = SubNetwork.from_arch(len(job.classes), n_landmarks, arch, seed=0)
        net.load_state_dict(state, strict=True)
        net.to(job.device).eval()
        probs = []
        for start in range(0, data.n, chunk):
            x = normalise_pixels(data.images[start:start + chunk]).unsqueeze(1)
            with autocast:
                logits = net.classify(x)
            probs.append(torch.softmax(logits.float(), -1).cpu())
        probs = torch.cat(probs).numpy().astype(np.float32)
        table = pa.table({
            "sample_id": prepared.sample_ids,
            "eval_dataset": [job.eval_dataset] * data.n,
            "fold": pa.array([-1] * data.n, pa.int32()),
            "label": prepared.labels,
            "probs": pa.array(list(probs), pa.list_(pa.float32())),
        }, schema=PREDICTION_SCHEMA)
        atomic_write_bytes(job.out_paths[i], _parquet_bytes(table))
    return len(todo)
