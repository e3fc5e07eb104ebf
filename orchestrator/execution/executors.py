"""Running the plan's pack chains: in this process (`inline`), or as Ray tasks (`ray`).

Both implement execution.executor.Executor. Inline imports no Ray: it serves debugging, profiling, and GPU machines where Ray is absent.
The Ray executor submits every chain at once; stage s+1 of a chain is a task that depends on
stage s's result, so Ray runs independent chains concurrently on whatever CPUs/GPUs exist and
retries a pack whose worker died (the pack resumes from its last saved epoch).
"""
from __future__ import annotations

import os

from partfer.data_prep.private_ray import OOM_RETRIES_ENV
from partfer.orchestrator.config import packs_per_gpu
from partfer.orchestrator.training.epoch_metrics import epoch_reporter
from partfer.orchestrator.execution.executor import Executor
from partfer.orchestrator.execution.progress import Progress
from partfer.orchestrator.training.jobs import PackJob, PackResult
from partfer.orchestrator.training.train import run_pack

# Peak GPU memory of a training pack per pixel of its batch (models x batch x side^2), from the
# measured peak of a 50-model, 32-image, 160 px bf16 pack (BENCHMARKS.md).
PACK_BYTES_PER_PIXEL = 14_440 * 2**20 / (50 * 32 * 160 * 160)


def pack_memory_bytes(job: PackJob) -> int:
    """Estimated peak GPU memory of a pack's training step."""
    return int(len(job.models) * job.stage.batch_size * job.image_size ** 2 * PACK_BYTES_PER_PIXEL)


def packs_that_fit(chains: list[list[PackJob]], wanted: int) -> int:
    """`wanted` concurrent packs, fewer if the biggest pack that many times overfills the GPU."""
    jobs = [job for chain in chains for job in chain]
    if wanted <= 1 or not jobs or not jobs[0].device.startswith("cuda"):
        return max(1, wanted)
    import torch
    total = torch.cuda.get_device_properties(torch.device(jobs[0].device)).total_memory
    need = max(pack_memory_bytes(job) for job in jobs)
    return max(1, min(wanted, int(0.9 * total // max(1, need))))


def explain_oom(job: PackJob, exc: BaseException) -> RuntimeError:
    """A GPU out-of-memory error restated with the pack's estimated need and what to change."""
    return RuntimeError(
        f"{job.dataset} {job.stage.stage} pack of {len(job.models)} models at {job.image_size} px ran out of "
        f"GPU memory (it needs about {pack_memory_bytes(job) / 2**30:.1f} GiB); packs sharing the GPU "
        f"(train.gpus_per_pack < 1) take the rest: set train.gpus_per_pack=1 or a smaller "
        f"train.pack_size. ({str(exc).splitlines()[0]})")


def run_inline(chains: list[list[PackJob]], progress: Progress, threads: int | None = None,
               concurrent: int = 1) -> list[PackResult]:
    """Run every chain in this process; `concurrent` chains at a time (threads).

    One pack rarely fills a GPU for its whole life: early-stopped models leave the computation and
    its last epochs run a few models. Concurrent chains fill those gaps; each thread issues its
    packs on its own CUDA stream, so their kernels overlap instead of queueing on one. A pack's
    randomness is its own generator's, so results do not depend on `concurrent`. A failed pack
    stops its chain and starts no new chain; the packs running finish, then its error is raised.
    """
    import torch
    if threads:
        torch.set_num_threads(threads)
    progress.plan(chains)
    fit = packs_that_fit(chains, concurrent)
    if fit < concurrent:
        progress.note(f"{fit} pack chain(s) at a time, not {concurrent}: more do not fit in the GPU's memory")
    concurrent = fit
    if concurrent <= 1 or len(chains) <= 1:
        results = []
        for chain in chains:
            results.extend(_run_chain(chain, progress))
        return results

    import threading
    from concurrent.futures import ThreadPoolExecutor
    failed = threading.Event()

    def worker(chain: list[PackJob]) -> list[PackResult]:
        device = torch.device(chain[0].device)
        if device.type != "cuda":
            return _run_chain(chain, progress, failed)
        stream = torch.cuda.Stream(device)
        try:
            with torch.cuda.stream(stream):
                return _run_chain(chain, progress, failed)
        finally:
            stream.synchronize()

    with ThreadPoolExecutor(max_workers=min(concurrent, len(chains)), thread_name_prefix="pack") as pool:
        futures = [pool.submit(worker, chain) for chain in chains]   # longest chains first (plan)
        results, errors = [], []
        for future in futures:
            try:
                results.extend(future.result())
            except BaseException as exc:     # noqa: BLE001 - re-raised below, after the others end
                failed.set()
                errors.append(exc)
    if errors:
        raise errors[0]
    return results


def _run_chain(chain: list[PackJob], progress: Progress, failed=None) -> list[PackResult]:
    results = []
    for job in chain:
        if failed is not None and failed.is_set():
            break                              # another chain failed: finish no more packs
        try:
            progress.started(job)
            result = _run_pack(job, lambda text, job=job: progress.pack_line(job, text),
                               epoch_reporter(job, lambda epoch, figures, job=job: progress.epoch(job, epoch, figures)))
        except BaseException:
            if failed is not None:
                failed.set()
            raise
        progress.finished(job, result)
        results.append(result)
    return results


def _run_pack(job: PackJob, log, on_epoch=None) -> PackResult:
    import torch
    try:
        return run_pack(job, log=log, on_epoch=on_epoch)
    except torch.cuda.OutOfMemoryError as exc:
        raise explain_oom(job, exc) from exc


def run_cross_evals_inline(jobs: list, progress: Progress) -> int:
    from partfer.orchestrator.evaluation.cross_eval import run_cross_eval
    written = 0
    for job in jobs:
        written += run_cross_eval(job)
    if jobs:
        progress.note(f"cross-data-set tests: {written} prediction files written")
    return written


def run_cross_evals_ray(jobs: list, progress: Progress, gpus: float) -> int:
    import ray

    from partfer.orchestrator.evaluation.cross_eval import run_cross_eval
    remote = ray.remote(run_cross_eval)
    refs = [remote.options(num_cpus=1, num_gpus=gpus if job.device.startswith("cuda") else 0).remote(job)
            for job in jobs]
    written = sum(ray.get(refs)) if refs else 0
    if jobs:
        progress.note(f"cross-data-set tests: {written} prediction files written")
    return written


def _remote_pack(job: PackJob, index: int, sink, *_upstream: PackResult) -> PackResult:
    """Ray task body: the pack's lines and epochs go to the driver through `sink` (a Ray queue),
    tagged with the pack's `index`; `_upstream` only carries the dependency on the previous stage."""
    import torch
    threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)
    if threads:
        torch.set_num_threads(threads)
    messages = PackMessages(sink, index)
    send = messages.send
    send("start")                          # the driver prints the start line when the pack starts
    try:
        return _run_pack(job, lambda text: send("log", text),
                         epoch_reporter(job, lambda epoch, figures: send("epoch", epoch, figures)))
    finally:
        messages.flush()                   # the pack's last lines reach the queue before its result


class PackMessages:
    """Puts (index, kind, *payload) on the driver's queue without waiting for them.

    A Ray task that waits on another (a blocking Queue.put; polling the puts did too) hands its
    CPU back to the scheduler, which then starts one more pack on it: the packs would outnumber
    the cores. So the puts are only checked by flush(), at the pack's end, which waits for them.
    A lost queue must not stop the pack either: when a put failed, the lines not known to have
    arrived, and all later ones, go to the worker's stdout (which Ray forwards to the driver)."""

    def __init__(self, sink, index: int):
        self.sink, self.index = sink, index
        self.in_flight: dict = {}              # put's ref -> (kind, payload), in sending order
        self.lost = False

    def send(self, kind: str, *payload) -> None:
        if not self.lost:
            try:
                self.in_flight[self.sink.actor.put_nowait.remote((self.index, kind, *payload))] = (kind, payload)
                return
            except Exception as exc:  # noqa: BLE001 - any failure of the queue actor
                self._lose(exc)
        _print_line(kind, payload)

    def flush(self) -> None:
        """Wait for the puts in flight; the first that failed loses the queue."""
        import ray
        if self.lost or not self.in_flight:
            return
        for ref in list(self.in_flight):       # in sending order
            try:
                ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - any failure of the queue actor
                self._lose(exc)
                return
            del self.in_flight[ref]

    def _lose(self, exc: BaseException) -> None:
        self.lost = True
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        print(f"pack messages no longer reach the driver ({reason}); lines follow here", flush=True)
        for kind, payload in self.in_flight.values():
            _print_line(kind, payload)
        self.in_flight.clear()


def _print_line(kind: str, payload: tuple) -> None:
    if kind == "log":
        print(payload[0], flush=True)


def deliver(messages: list[tuple], jobs: list[PackJob], progress: Progress) -> None:
    """Hand the packs' queued lines and epochs to the driver's Progress."""
    for index, kind, *payload in messages:
        job = jobs[index]
        if kind == "start":
            progress.started(job)
        elif kind == "log":
            progress.pack_line(job, payload[0])
        elif kind == "epoch":
            progress.epoch(job, *payload)


def _drain(sink) -> list[tuple]:
    size = sink.qsize()
    return sink.get_nowait_batch(size) if size else []


def run_ray(chains: list[list[PackJob]], progress: Progress, cpus_per_pack: float,
            gpus_per_pack: float, max_retries: int) -> list[PackResult]:
    import ray
    from ray.util.queue import Queue
    progress.plan(chains)
    remote = ray.remote(_remote_pack)
    sink = Queue(actor_options={"num_cpus": 0})
    jobs = [job for chain in chains for job in chain]
    pending: dict = {}
    index = 0
    for chain in chains:
        previous = None
        for job in chain:
            uses_gpu = job.device.startswith("cuda")
            ref = remote.options(num_cpus=cpus_per_pack, num_gpus=gpus_per_pack if uses_gpu else 0,
                                 max_retries=max_retries, retry_exceptions=False,
                                 name=f"{job.dataset}-{job.stage.stage}-pack").remote(
                job, index, sink, *([previous] if previous is not None else []))
            pending[ref] = job
            previous = ref
            index += 1
    results: list[PackResult] = []

    def finished(job: PackJob, result: PackResult) -> None:
        progress.finished(job, result)
        results.append(result)
    failures = collect(pending, sink, jobs, progress,
                       lambda job: f"{job.dataset} {job.stage.stage} pack ({len(job.models)} models)", finished)
    ray.kill(sink.actor)
    if failures:
        raise PackFailure(failures)
    return results


def collect(pending: dict, sink, jobs: list[PackJob], progress: Progress, describe, on_done) -> list[str]:
    """Wait for every pending Ray task (ref -> what it runs), handing the packs' queued lines to
    Progress as they come; on_done(what, value) for each task that succeeds. A failed task does not
    stop the others: its description (describe(what) and Ray's last line) is returned with the rest."""
    import ray
    failures: list[str] = []
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        deliver(_drain(sink), jobs, progress)     # a pack's last lines before its done line
        for ref in ready:
            what = pending.pop(ref)
            try:
                value = ray.get(ref)
            except ray.exceptions.RayError as exc:
                failures.append(failure_line(describe(what), exc))
                progress.error(f"FAILED {failures[-1]}")
                continue
            on_done(what, value)
    deliver(_drain(sink), jobs, progress)
    return failures


def failure_line(what: str, exc: BaseException) -> str:
    """One line on a failed task: Ray's last line, or for a task killed for memory what happened
    and how to go on (Ray's own message is a page of memory tables)."""
    import ray
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        retries = os.environ.get(OOM_RETRIES_ENV)
        spent = f" (after {retries} retries)" if retries else ""
        return (f"{what}: killed for memory by Ray's memory monitor{spent}; re-run the "
                f"same command to resume: finished models are kept (to need less memory at once: a smaller "
                f"train.pack_size, or more train.cpus_per_pack so fewer packs share the machine)")
    return f"{what}: {str(exc).strip().splitlines()[-1]}"


class PackFailure(RuntimeError):
    def __init__(self, failures: list[str]):
        super().__init__(f"{len(failures)} pack(s) failed: " + "; ".join(failures))
        self.failures = failures


class InlineExecutor(Executor):
    """Every chain in this process; on CUDA, as many chains at once as packs share a GPU."""
    uses_ray = False

    def run_chains(self, chains: list[list[PackJob]], progress: Progress) -> list[PackResult]:
        concurrent = packs_per_gpu(self.cfg) if self.device.startswith("cuda") else 1
        return run_inline(chains, progress, concurrent=concurrent)

    def run_cross_evals(self, jobs: list, progress: Progress) -> int:
        return run_cross_evals_inline(jobs, progress)


class RayExecutor(Executor):
    """Every pack a Ray task with the config's CPU and GPU share, retried when its worker dies."""

    def run_chains(self, chains: list[list[PackJob]], progress: Progress) -> list[PackResult]:
        tr = self.cfg["train"]
        return run_ray(chains, progress, cpus_per_pack=float(tr["cpus_per_pack"]),
                       gpus_per_pack=float(tr["gpus_per_pack"]), max_retries=int(tr["max_retries"]))

    def run_cross_evals(self, jobs: list, progress: Progress) -> int:
        return run_cross_evals_ray(jobs, progress, gpus=min(1.0, float(self.cfg["train"]["gpus_per_pack"])))
