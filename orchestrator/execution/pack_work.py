"""A pack's work before any training: its models still to train, epochs, steps and batch, and the
image-steps they make (one training image through one model's forward and backward pass: a stage
of E epochs of S steps at batch B costs E * S * B per model; validation passes are not counted).
The dry run's summary, the layout planner and the progress ETA all count work this way.
"""
from __future__ import annotations

from dataclasses import dataclass

from partfer.orchestrator.training.jobs import PackJob, job_done, pack_selections, steps_per_epoch


@dataclass(frozen=True)
class PackWork:
    dataset: str
    selection: str                # one selection, or several joined by "+" (one training serving each)
    stage: str
    models: int                   # models still to train in the pack
    epochs: int
    steps: int                    # per epoch
    batch: int

    @property
    def image_steps(self) -> int:
        return self.models * self.epochs * self.steps * self.batch


def pack_work(job: PackJob) -> PackWork:
    todo = [m for m in job.models if not job_done(m)]
    st = job.stage
    steps = steps_per_epoch(st, [len(m.train) for m in (todo or job.models)])
    return PackWork(job.dataset, "+".join(pack_selections(job)), st.stage, len(todo), st.max_epochs, steps,
                    st.batch_size)


__all__ = ["PackWork", "pack_work"]
