"""Running the plan's pack chains: in this process (`inline`), or as Ray tasks (`ray`).

Inline imports no Ray: it serves debugging, profiling, and GPU machines where Ray is absent.
The Ray executor submits every chain at once; stage s+1 of a chain is a task that depends on
stage s's result, so Ray runs independent chains concurrently on whatever CPUs/GPUs exist and
retries a pack whose worker died (the pack resumes from its last saved epoch).
"""
from __future__ import annotations

import os

from orchestrator.progress import Progress
from orchestrator.train import PackJob, PackResult, run_pack


def run_inline(chains: list[list[PackJob]], progress: Progress, threads: int | None = None) -> list[PackResult]:
    import torch
    if threads:
        torch.set_num_threads(threads)
    results = []
    for chain in chains:
        for job in chain:
            progress.started(job)
            result = run_pack(job, log=progress.note)
            progress.finished(job, result)
            results.append(result)
    return results


def run_cross_evals_inline(jobs: list, progress: Progress) -> int:
    from orchestrator.cross_eval import run_cross_eval
    written = 0
    for job in jobs:
        written += run_cross_eval(job)
    if jobs:
        progress.note(f"cross-data-set tests: {written} prediction files written")
    return written


def run_cross_evals_ray(jobs: list, progress: Progress, gpus: float) -> int:
    import ray

    from orchestrator.cross_eval import run_cross_eval
    remote = ray.remote(run_cross_eval)
    refs = [remote.options(num_cpus=1, num_gpus=gpus if job.device.startswith("cuda") else 0).remote(job)
            for job in jobs]
    written = sum(ray.get(refs)) if refs else 0
    if jobs:
        progress.note(f"cross-data-set tests: {written} prediction files written")
    return written


def _remote_pack(job: PackJob, *_upstream: PackResult) -> PackResult:
    """Ray task body; `_upstream` only carries the dependency on the previous stage."""
    import torch
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    return run_pack(job, log=lambda text: print(text, flush=True))


def run_ray(chains: list[list[PackJob]], progress: Progress, cpus_per_pack: float,
            gpus_per_pack: float, max_retries: int) -> list[PackResult]:
    import ray
    remote = ray.remote(_remote_pack)
    pending: dict = {}
    for chain in chains:
        previous = None
        for job in chain:
            uses_gpu = job.device.startswith("cuda")
            ref = remote.options(num_cpus=cpus_per_pack, num_gpus=gpus_per_pack if uses_gpu else 0,
                                 max_retries=max_retries, retry_exceptions=False,
                                 name=f"{job.dataset}-{job.stage.stage}-pack").remote(
                job, *([previous] if previous is not None else []))
            pending[ref] = job
            previous = ref
    results, failures = [], []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        for ref in ready:
            job = pending.pop(ref)
            try:
                result = ray.get(ref)
            except ray.exceptions.RayError as exc:
                # The rest of the plan goes on; the failure is reported at the end.
                failures.append(f"{job.dataset} {job.stage.stage} pack "
                                f"({len(job.models)} models): {str(exc).strip().splitlines()[-1]}")
                progress.note(f"FAILED {failures[-1]}")
                continue
            progress.finished(job, result)
            results.append(result)
    if failures:
        raise PackFailure(failures)
    return results


class PackFailure(RuntimeError):
    def __init__(self, failures: list[str]):
        super().__init__(f"{len(failures)} pack(s) failed: " + "; ".join(failures))
        self.failures = failures
