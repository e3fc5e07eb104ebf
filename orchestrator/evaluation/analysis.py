"""Analyses that need the trained networks themselves (results/ works from files alone):
Grad-CAM maps of chosen test faces for every system (paper Section IV-C, Fig. 11).

Writes `runs/<id>/analysis/gradcam_<dataset>.npz`: images (K,S,S) uint8, sample_ids, labels,
classes, and per Grad-CAM system (orchestrator.networks: "baseline", "ftl", "el-<part>")
`map_<system>` (K,S,S) in [0,1] and `pred_<system>` (K,) class index. Baseline/FTL maps are the
union (elementwise max) of their members' maps for the ensemble's predicted class, as in the paper.
"""
from __future__ import annotations

import io
from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.records import RunPlan, main_models
from partfer.orchestrator.run_files import CHECKPOINT_FILE, PREDICTIONS_FILE, analysis_dir, gradcam_name
from partfer.orchestrator.storage.root import run_store
from partfer.orchestrator.storage.store import atomic_write_bytes, join, local_file, stored


def choose_faces(plan: RunPlan, dataset: str, storage: str, per_class: int = 1,
                 limit: int = 7) -> list[tuple[str, int]]:
    """(sample_id, fold) of test faces to explain: the first test sample of each class, in order,
    among the test predictions of the part networks (EL). `storage`: the storage root, a
    directory or a URI."""
    classes = plan.datasets[dataset].classes
    seen: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for rec in sorted((r for r in main_models(plan) if r.dataset == dataset and NETWORKS[r.network].by_part),
                      key=lambda r: (r.fold, r.member)):
        path = local_file(join(storage, rec.dir, PREDICTIONS_FILE), missing_ok=True)
        if path is None:
            continue
        table = pq.read_table(path, columns=["sample_id", "label"]).to_pydict()
        for sid, label in sorted(zip(table["sample_id"], table["label"])):
            if len(seen[label]) < per_class and (sid, rec.fold) not in seen[label]:
                seen[label].append((sid, rec.fold))
    chosen = [item for c in classes for item in seen.get(c, [])]
    return chosen[:limit]


def _load(rec, storage: str, n_classes: int, model_cfg: dict, device: str):
    from partfer.models.config import ArchConfig
    from partfer.models.subnet import SubNetwork
    state = torch.load(local_file(join(storage, rec.dir, CHECKPOINT_FILE)), map_location="cpu",
                       weights_only=True)
    n_landmarks = state["landmark_head.fc2.bias"].shape[0] if "landmark_head.fc2.bias" in state else None
    net = SubNetwork.from_arch(n_classes, n_landmarks, ArchConfig.from_config(model_cfg), seed=0)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval()


def gradcam_dataset(plan: RunPlan, dataset: str, run_dir: Path, model_cfg: dict, image_size: int,
                    device: str = "cpu") -> Path | None:
    """Compute and save the Grad-CAM maps of one data set's chosen test faces."""
    from partfer.models.gradcam import gradcam, union
    from partfer.orchestrator.training.augment import normalise_pixels
    from partfer.orchestrator.training.tensors import device_data

    # the run's store: its URI, else the directory holding runs/ (a moved store still works)
    storage = run_store(plan.storage, run_dir).root
    faces = choose_faces(plan, dataset, storage)
    if not faces:
        return None
    info = plan.datasets[dataset]
    data = device_data(stored(storage, info.prepared), image_size, device, list(info.classes))
    row_of = {sid: i for i, sid in enumerate(data.prepared.sample_ids)}
    rows = [row_of[sid] for sid, _ in faces]
    x_all = normalise_pixels(data.images[rows]).unsqueeze(1)
    out: dict[str, np.ndarray] = {
        "images": data.images[rows].cpu().numpy(), "sample_ids": np.array([s for s, _ in faces]),
        "labels": np.array([data.prepared.labels[r] for r in rows]), "classes": np.array(info.classes),
    }
    systems: dict[str, list] = defaultdict(list)
    for rec in main_models(plan):
        if rec.dataset == dataset and NETWORKS[rec.network].gradcam:
            systems[NETWORKS[rec.network].gradcam_system(rec.member)].append(rec)
    n_classes = len(info.classes)
    for name, recs in sorted(systems.items()):
        maps = np.zeros((len(faces), image_size, image_size), np.float32)
        preds = np.full(len(faces), -1, np.int64)          # -1: no model of this fold
        for k, (_, fold) in enumerate(faces):
            members = [r for r in recs if r.fold == fold]
            if not members:
                continue
            nets = [_load(r, storage, n_classes, model_cfg, device) for r in members]
            x = x_all[k:k + 1]
            with torch.no_grad():
                probs = sum(torch.softmax(n.classify(x), -1) for n in nets)
            pred = int(probs.argmax(-1))
            member_maps = [gradcam(n, x, torch.tensor([pred], device=x.device))[0] for n in nets]
            maps[k] = union(member_maps, dim=0).cpu().numpy()
            preds[k] = pred
        out[f"map_{name}"] = maps
        out[f"pred_{name}"] = preds
    buf = io.BytesIO()
    np.savez_compressed(buf, **out)
    path = analysis_dir(run_dir) / gradcam_name(dataset)
    atomic_write_bytes(path, buf.getvalue())
    return path
