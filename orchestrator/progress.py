"""A progress display for long runs: model-stages done / total, packs running, elapsed time."""
from __future__ import annotations

import sys
import threading
import time


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total_model_stages: int, already_done: int, total_packs: int, stream=None,
                 start: float | None = None):
        self.total = total_model_stages
        self.done = already_done
        self.packs_total = total_packs
        self.packs_done = 0
        self.start = start or time.time()
        self.stream = stream or sys.stderr
        self.images = 0
        self._lock = threading.RLock()      # packs may finish in several threads (inline executor)
        if already_done:
            self._print(f"{already_done} model-stages already finished in the store: skipped")

    def _print(self, text: str) -> None:
        with self._lock:
            print(f"[partfer {_clock(time.time() - self.start)}] {text}", file=self.stream, flush=True)

    def started(self, job) -> None:
        self._print(f"start  {job.dataset:<8} {job.stage.stage:<8} pack of {len(job.models)} models "
                    f"({job.stage.max_epochs} epochs max)")

    def finished(self, job, result) -> None:
        with self._lock:
            self._finished(job, result)

    def _finished(self, job, result) -> None:
        self.packs_done += 1
        self.done += result.trained
        self.images += result.images
        pct = 100.0 * self.done / max(1, self.total)
        rate = result.images / result.seconds if result.seconds > 0 else 0.0
        epochs = f"epochs {min(result.epochs)}-{max(result.epochs)}" if result.epochs else "nothing to train"
        self._print(f"done   {job.dataset:<8} {job.stage.stage:<8} {result.trained} models, {epochs}, "
                    f"{result.seconds:.0f} s, {rate:.0f} img/s | model-stages {self.done}/{self.total} "
                    f"({pct:.0f}%) packs {self.packs_done}/{self.packs_total}")

    def note(self, text: str) -> None:
        self._print(text)
