"""What a plan will train, before any training: packs, models, epochs, image-steps
(orchestrator.execution.pack_work), and a projected time from a throughput measured by earlier
runs in the same store (`partfer run --dry-run`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from partfer.orchestrator.execution.pack_planner import ProjectionRates, choose, curve_for, slots_for, workload
from partfer.orchestrator.execution.pack_work import PackWork, pack_work
from partfer.orchestrator.run_files import PLAN_FILE, RUNS_DIR
from partfer.orchestrator.training.jobs import PackJob


@dataclass(frozen=True)
class MeasuredRate:
    images_per_second: float
    run_id: str


def measured_rate(storage: str, device: str, image_size: int) -> MeasuredRate | None:
    """Training throughput of the most recent finished run in the store on the same kind of
    device at the same image size: its training images over the time its packs were running.
    `storage` is a local folder: the store's `work` (for a URI store, this node's copy of it)."""
    best: tuple[float, MeasuredRate] | None = None
    for path in sorted(Path(storage, RUNS_DIR).glob(f"*/{PLAN_FILE}")):
        try:
            settings = json.loads(path.read_text())["settings"]
        except (OSError, ValueError, KeyError):
            continue
        images, busy = settings.get("train_images"), settings.get("pack_busy_seconds")
        same = (str(settings.get("device", "")).split(":")[0] == device.split(":")[0]
                and settings.get("image_size") == image_size)
        if settings.get("status") != "finished" or not same or not images or not busy:
            continue
        stamp = float(settings.get("finished") or 0)
        if best is None or stamp > best[0]:
            best = (stamp, MeasuredRate(images / busy, path.parent.name))
    return best[1] if best else None


def _millions(n: int) -> str:
    return f"{n / 1e6:,.2f}M"


def _duration(seconds: float) -> str:
    minutes = int(round(seconds / 60))
    return f"{minutes // 60}h {minutes % 60:02d}m" if minutes >= 60 else f"{max(seconds, 0) / 60:.1f} min"


def summary_lines(chains: list[list[PackJob]], n_model_stages: int, n_done: int, main_selection: str,
                  rate: MeasuredRate | None) -> list[str]:
    """The dry run's report, one line each."""
    work = [pack_work(job) for chain in chains for job in chain]
    lines = [f"plan: {n_model_stages} model-stages ({n_done} already done), "
             f"{sum(len(c) for c in chains)} packs in {len(chains)} chains"]
    groups: dict[tuple, list[PackWork]] = {}
    for w in work:
        groups.setdefault((w.dataset, w.selection, w.stage), []).append(w)
    header = f"  {'data set':<10} {'selection':<20} {'stage':<9} {'packs':>5} {'models':>6} {'epochs':>6} " \
             f"{'steps/epoch':>11} {'batch':>5} {'image-steps':>12}"
    lines.append(header)
    order = ("baseline", "landmark", "head", "finetune")
    for (dataset, selection, stage), ws in sorted(groups.items(), key=lambda kv: (
            kv[0][0], main_selection not in kv[0][1].split("+"), order.index(kv[0][2]) if kv[0][2] in order else 9)):
        models = sum(w.models for w in ws)
        steps = sorted({w.steps for w in ws})
        lines.append(f"  {dataset:<10} {selection:<20} {stage:<9} {len(ws):>5} {models:>6} {ws[0].epochs:>6} "
                     f"{'/'.join(map(str, steps)):>11} {ws[0].batch:>5} {_millions(sum(w.image_steps for w in ws)):>12}")
    total = sum(w.image_steps for w in work)
    per_dataset: dict[str, int] = {}
    for w in work:
        per_dataset[w.dataset] = per_dataset.get(w.dataset, 0) + w.image_steps
    lines.append("image-steps by data set: " + ", ".join(f"{d} {_millions(n)}" for d, n in per_dataset.items()))
    twin = sum(w.image_steps for w in work if main_selection not in w.selection.split("+"))
    shared = sum(w.image_steps for w in work if "+" in w.selection)
    notes = ([f"the no-peeking twin's own training: {_millions(twin)} of them"] if twin else []) + \
            ([f"{_millions(shared)} in trainings that serve both selections"] if shared else [])
    lines.append(f"image-steps in all: {_millions(total)}" + (f" ({'; '.join(notes)})" if notes else ""))
    if rate is None:
        lines.append("projected time: no measured rate in this store for this device and image size "
                     "(a finished run records one)")
    else:
        lines.append(f"projected training time: {_duration(total / rate.images_per_second)} at "
                     f"{rate.images_per_second:,.0f} images/s (measured by run {rate.run_id})")
    return lines


def layout_lines(chains: list[list[PackJob]], device: str, gpus: float, cpus: float,
                 rate: MeasuredRate | None, rates: ProjectionRates,
                 gpu_counts: tuple[int, ...] = (1, 4, 8, 32)) -> list[str]:
    """The planner's layout for this cluster (executor train), and the plan's projected wall time
    on 1, 4, 8 and 32 GPUs at the pack rates measured on one GPU (the hardware profile's projection)."""
    start = rates.trainer_start_seconds
    kinds = workload(chains)
    if not kinds:
        return []
    size = max(len(job.models) for chain in chains for job in chain)
    slots = slots_for(device, gpus, cpus, 1.0, 1.0)
    where = f"{slots} GPU(s)" if device.startswith("cuda") else f"{slots} CPU worker(s)"
    if device.startswith("cuda") or rate is not None:
        curve = curve_for(device, rates, rate.images_per_second if rate else None)
        mine = choose(kinds, slots, curve, start, pack_sizes=(size,))
        best = choose(kinds, slots, curve, start)
        lines = [f"executor train on this cluster ({where}): {mine.workers} pack(s) of {size} per Train run, "
                 f"{mine.concurrent} run(s) at once: {_duration(mine.wall_seconds)}"]
        if best.pack_size != size:
            lines.append(f"  faster here: train.pack_size={best.pack_size}, {best.workers} per run: "
                         f"{_duration(best.wall_seconds)} (other packs, other batch draws: other numbers)")
    else:
        lines = [f"executor train on this cluster ({where}): no measured rate for a projection"]
    measured = ", ".join(f"{images / 1000:.1f}k img/s a {m}-model pack" for m, images in rates.pack_rates)
    lines.append(f"projected on {rates.gpu}-class GPUs ({measured}, {start:.0f} s per Train run):")
    for n in gpu_counts:
        best = choose(kinds, n, rates.curve, start)
        lines.append(f"  {n:>3} GPU(s): {_duration(best.wall_seconds):>9}  (pack_size {best.pack_size}, "
                     f"{best.workers} per run, {best.concurrent} runs at once, {best.runs} runs)")
    return lines


__all__ = ["MeasuredRate", "layout_lines", "measured_rate", "summary_lines"]
