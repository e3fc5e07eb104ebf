"""What a long run shows while it trains: packs started and done, model-stages, an ETA, the packs'
own lines, and (with a run directory) every model's per-epoch figures in CSV and TensorBoard files.

The ETA divides the image-steps still planned (orchestrator.execution.pack_work: models x epochs x
steps x batch per pack) by the rate measured so far in this run: image-steps finished, a
running pack counted by the share of its epochs done, over the seconds since training began.

Verbosity (`partfer run -q / -v`): QUIET prints errors only, NORMAL the packs' start and done
lines and their own log lines, VERBOSE also one line per pack and epoch.
"""
from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path

from partfer.orchestrator.training.jobs import pack_name

QUIET, NORMAL, VERBOSE = 0, 1, 2
_verbosity = NORMAL


def set_verbosity(level: int) -> None:
    """The verbosity of every Progress made afterwards without an explicit one (the CLI's -q/-v)."""
    global _verbosity
    _verbosity = max(QUIET, min(VERBOSE, int(level)))


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_model_stages: int, already_done: int, total_packs: int, stream=None,
                 start: float | None = None, run_dir: Path | str | None = None,
                 verbosity: int | None = None):
        self.total = total_model_stages
        self.done = already_done
        self.packs_total = total_packs
        self.packs_done = 0
        self.start = start or time.time()
        self.stream = stream or sys.stderr
        self.verbosity = _verbosity if verbosity is None else verbosity
        self.images = 0
        self.files = None
        if run_dir is not None:
            from partfer.orchestrator.training.epoch_metrics import EpochFiles
            self.files = EpochFiles(run_dir)
        self._planned: dict[int, tuple[int, int]] = {}    # id(job) -> (image-steps, epochs)
        self._stage: dict[int, str] = {}                  # id(job) -> its stage
        self._measured: dict[str, list[float]] = {}       # stage -> [pack-seconds, image-steps] of finished packs
        self._fraction: dict[int, float] = {}             # id(job) -> share of its epochs done
        self._steps_total = 0
        self._train_start: float | None = None
        self._lock = threading.RLock()      # packs may finish in several threads (inline executor)
        if already_done:
            self.note(f"{already_done} model-stages already finished in the store: skipped")

    def _print(self, text: str, level: int = NORMAL) -> None:
        if self.verbosity < level:
            return
        with self._lock:
            print(f"[partfer {_clock(time.time() - self.start)}] {text}", file=self.stream, flush=True)

    def plan(self, chains: list[list]) -> None:
        """Learn each pack's planned image-steps; training time is counted from now."""
        from partfer.orchestrator.execution.pack_work import pack_work
        with self._lock:
            for chain in chains:
                for job in chain:
                    self._planned[id(job)] = (pack_work(job).image_steps, max(1, job.stage.max_epochs))
                    self._stage[id(job)] = job.stage.stage
            self._steps_total = sum(steps for steps, _ in self._planned.values())
            self._train_start = time.time()

    def steps_done(self) -> float:
        return sum(self._planned[key][0] * share for key, share in self._fraction.items() if key in self._planned)

    def _costs(self) -> dict[str, float]:
        """Seconds per image-step of each stage, from its finished packs. The stages differ (the
        head stage's extractor is frozen); a stage not measured yet costs the mean of those that are."""
        costs = {stage: seconds / steps for stage, (seconds, steps) in self._measured.items() if steps > 0}
        default = sum(costs.values()) / len(costs) if costs else 1.0
        return {stage: costs.get(stage, default) for stage in set(self._stage.values())}

    def eta(self, now: float | None = None) -> str:
        """'image-steps 1.20M/4.00M (30%), 1,600 image-steps/s, ETA 0:12:30' once a rate is
        measured; '' before `plan`. The time left weighs each pack's remaining image-steps by its
        stage's measured cost, scaled by how fast the run has got through its weighted work so far
        (which counts the packs running side by side)."""
        if not self._steps_total or self._train_start is None:
            return ""
        done = self.steps_done()
        elapsed = (now or time.time()) - self._train_start
        text = f"image-steps {_count(done)}/{_count(self._steps_total)} ({100 * done / self._steps_total:.0f}%)"
        if done <= 0 or elapsed <= 0:
            return text + ", ETA not yet measured"
        costs = self._costs()
        weighted_done = weighted_left = 0.0
        for key, (steps, _) in self._planned.items():
            share = self._fraction.get(key, 0.0)
            cost = costs.get(self._stage.get(key, ""), 1.0)
            weighted_done += steps * share * cost
            weighted_left += steps * (1.0 - share) * cost
        left = weighted_left * elapsed / weighted_done if weighted_done > 0 else math.inf
        return text + f", {done / elapsed:,.0f} image-steps/s, ETA {_clock(left) if math.isfinite(left) else '?'}"

    def started(self, job) -> None:
        self._print(f"start  {job.dataset:<8} {job.stage.stage:<8} {pack_name(job)}, "
                    f"{job.stage.max_epochs} epochs max")

    def pack_line(self, job, text: str) -> None:
        """A line a pack logged (NORMAL): never merged with another pack's identical line."""
        self._print(text)

    def epoch(self, job, epoch: int, figures: dict[str, dict]) -> None:
        """A pack finished an epoch: figures of each model that trained in it (epoch_metrics)."""
        with self._lock:
            planned = self._planned.get(id(job))
            if planned is not None:
                self._fraction[id(job)] = min(1.0, epoch / planned[1])
            if self.files is not None:
                try:
                    self.files.write(job, epoch, figures)
                except OSError as exc:               # a full disk must not stop the training
                    self.error(f"per-epoch metrics not written: {exc}")
                    self.files = None
            if self.verbosity >= VERBOSE:
                self._print(f"{job.dataset} {job.stage.stage} {pack_name(job)}: epoch "
                            f"{epoch}/{job.stage.max_epochs}, {len(figures)} training, "
                            f"{_means(figures)} | {self.eta()}", VERBOSE)

    def finished(self, job, result) -> None:
        with self._lock:
            self._finished(job, result)

    def _finished(self, job, result) -> None:
        self.packs_done += 1
        self.done += result.trained
        self.images += result.images
        self._fraction[id(job)] = 1.0
        if result.images > 0 and result.seconds > 0:
            measured = self._measured.setdefault(job.stage.stage, [0.0, 0.0])
            measured[0] += result.seconds
            measured[1] += result.images
        pct = 100.0 * self.done / max(1, self.total)
        rate = result.images / result.seconds if result.seconds > 0 else 0.0
        epochs = f"epochs {min(result.epochs)}-{max(result.epochs)}" if result.epochs else "nothing to train"
        eta = self.eta()
        self._print(f"done   {job.dataset:<8} {job.stage.stage:<8} {pack_name(job)}: {result.trained} written, {epochs}, "
                    f"{result.seconds:.0f} s, {rate:.0f} img/s | model-stages {self.done}/{self.total} "
                    f"({pct:.0f}%) packs {self.packs_done}/{self.packs_total}" + (f" | {eta}" if eta else ""))

    def note(self, text: str) -> None:
        self._print(text)

    def error(self, text: str) -> None:
        """Shown at every verbosity, -q included."""
        self._print(text, QUIET)


def _count(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n:,.0f}"


def _means(figures: dict[str, dict]) -> str:
    parts = []
    for name, label, scale in (("train_loss", "train loss", 1), ("val_loss", "val loss", 1),
                               ("val_acc", "val acc %", 100)):
        values = [f[name] for f in figures.values() if f.get(name) is not None]
        if values:
            parts.append(f"{label} {scale * sum(values) / len(values):.4g}")
    return ", ".join(parts) or "no figures"
