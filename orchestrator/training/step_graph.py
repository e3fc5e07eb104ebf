"""A pack's training steps, run eagerly or replayed as one captured CUDA graph.

Why: a step issues ~600 kernel launches from Python (545 aten ops + 48 Triton launches counted by
`bench/train_throughput.py --count-ops`). A full 50-model pack hides that behind ~40 ms of GPU
work per step. A compacted pack's last epochs (5-12 models, a few ms of GPU work per step) do
not: the GPU waits on the host, and three packs sharing a GPU from one process's threads also
share one interpreter lock. Replaying a captured step costs one launch.

What makes a step capturable: `train.train_step` reads nothing back from the GPU (held to that
by tests/orchestrator/test_train_step.py), Adam keeps its step counts on the device
(`capturable=True`), and the per-step random numbers come from a generator registered with the
graph. Replays then draw the same numbers an eager step would (graph-safe Philox offsets), so a
graphed pack follows the eager trajectory (GPU check: `bench/train_throughput.py --check`).

A graph is valid for one StepPlan. The trainer makes a new plan when the first model of a pack
stops and whenever the pack computes fewer models (at most log2(M) times); other stops change the
plan's tensors in place, which a replay reads. Each new plan gets eager warm-up steps (real steps,
they count) and then one capture. A capture executes nothing: the step that triggers it is its
first replay. All of a pack's graphs share one memory pool (the old graph stays alive until the
new one's capture has begun, so the pool does too, and is never replayed again); `close()` frees
it. Without that, every new plan would strand a step's worth of GPU memory in a dead graph's
pool until the allocator, short of memory, synchronised the device to free it, which would break
a capture in progress in another pack's thread.
"""
from __future__ import annotations

import contextlib
import threading
import warnings

from typing import Callable

import torch

# CUDA allows one capture at a time per process; packs of the inline executor run in threads.
_CAPTURE_LOCK = threading.Lock()
_THREAD = threading.local()           # per thread: its side streams (graph_stream)
# Warm-up steps before a pack's first capture (lazy initialisation: Adam's state, cuBLAS and cuDNN
# handles of the stream, Triton compilations) and before each later one (a compacted pack's new
# shapes may compile new kernels, which must not happen during a capture).
FIRST_WARMUP = 2
LATER_WARMUP = 1

# Warm-up steps run a capturable Adam eagerly on purpose; its warning about that is noise here.
warnings.filterwarnings("ignore", message=r"This instance was constructed with capturable=True")


class GraphCaptureError(RuntimeError):
    """A training step could not be captured as a CUDA graph."""


def make_capturable(opt: torch.optim.Optimizer) -> None:
    """Put an optimizer (e.g. one whose state was loaded from a checkpoint written by an eager
    run) into capturable form: the flag on every group and the step counts on the devices of
    their parameters."""
    for group in opt.param_groups:
        group["capturable"] = True
        for p in group["params"]:
            state = opt.state.get(p)
            if state and "step" in state and state["step"].device != p.device:
                state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


class PackStepper:
    """Runs a pack's training steps (`step(plan)`): eagerly, or with `graphs` (CUDA) as replays of
    a step captured once a plan has had its warm-up steps.

    step_fn(plan): one training step (train.train_step with the pack's network, optimizer,
    generator and accumulators bound). A graph replays the step on the very tensors it was
    captured with: the plan's, the network's, and the accumulators the step adds to, which must
    therefore live as long as the stepper (zero them between epochs, never replace them).
    Counts plans, eager steps, captures and replays (`counts()`) for the pack's log and the bench.
    """

    def __init__(self, step_fn: Callable, gen: torch.Generator, optimizer: torch.optim.Optimizer,
                 graphs: bool = False, first_warmup: int = FIRST_WARMUP, later_warmup: int = LATER_WARMUP):
        if graphs:
            if not all(group.get("capturable", False) for group in optimizer.param_groups):
                raise ValueError("CUDA graphs need an optimizer built with capturable=True "
                                 "(or passed through step_graph.make_capturable)")
            if gen.device.type != "cuda":
                raise ValueError(f"CUDA graphs need a CUDA pack; this one's generator is on {gen.device}")
        self.step_fn, self.gen, self.optimizer = step_fn, gen, optimizer
        self.graphs = graphs
        self.first_warmup, self.later_warmup = first_warmup, later_warmup
        self.plans = self.eager_steps = self.captures = self.replays = 0
        self._plan = None
        self._graph: torch.cuda.CUDAGraph | None = None
        self._retired: torch.cuda.CUDAGraph | None = None    # the last plan's graph: holds the pool
        self._pool = None                                    # the pack's graphs' memory pool
        self._warmup_left = 0

    def step(self, plan) -> None:
        if plan is not self._plan:
            self.plans += 1
            if self._graph is not None:
                self._retired, self._graph = self._graph, None
            self._plan = plan
            self._warmup_left = self.first_warmup if self.captures == 0 else self.later_warmup
        if not self.graphs:
            self._eager(plan)
            return
        if self._graph is None and self._warmup_left > 0:
            self._warmup_left -= 1
            self._eager(plan)
            return
        if self._graph is None:
            self._graph = self._capture(plan)
        self._graph.replay()
        self.replays += 1

    def close(self) -> None:
        """Drop the graphs and free their memory pool (the gradients live in it: they go too).
        Call when the pack's training ends."""
        if self._graph is None and self._retired is None:
            return
        self._graph = self._retired = self._plan = self._pool = None
        self.optimizer.zero_grad(set_to_none=True)
        with _CAPTURE_LOCK:           # freeing synchronises the device: never during a capture
            torch.cuda.empty_cache()

    def counts(self) -> dict:
        return {"step_plans": self.plans, "eager_steps": self.eager_steps, "graph_captures": self.captures,
                "graph_replays": self.replays}

    def _eager(self, plan) -> None:
        self.step_fn(plan)
        self.eager_steps += 1

    def _capture(self, plan) -> torch.cuda.CUDAGraph:
        device = self.gen.device
        if torch.cuda.current_stream(device) == torch.cuda.default_stream(device):
            # the legacy default stream cannot be captured; run_pack enters a side stream for graphs
            raise GraphCaptureError("a CUDA graph cannot be captured on the default stream: "
                                    "step inside `with torch.cuda.stream(...)`")
        graph = torch.cuda.CUDAGraph()
        if not hasattr(graph, "register_generator_state"):
            raise GraphCaptureError(f"torch {torch.__version__} cannot capture a step that draws from its own "
                                    "generator (CUDAGraph.register_generator_state); set train.cuda_graphs=false")
        graph.register_generator_state(self.gen)
        with _CAPTURE_LOCK:
            # thread_local: packs stepping in other threads keep running during the capture
            graph.capture_begin(*(() if self._pool is None else (self._pool,)), capture_error_mode="thread_local")
            try:
                self.step_fn(plan)
            except BaseException as exc:
                try:
                    graph.capture_end()
                except Exception:     # noqa: BLE001 - the capture is already broken; report the cause
                    pass
                raise GraphCaptureError(
                    f"capturing the training step as a CUDA graph failed ({type(exc).__name__}: {exc}); "
                    f"set train.cuda_graphs=false to train this pack eagerly") from exc
            graph.capture_end()
        self._pool = graph.pool()
        self._retired = None          # its memory now belongs to the new graph's captures
        self.captures += 1
        return graph


def graph_stream(device: torch.device):
    """A context for a pack's GPU work that can be captured: the current stream when it is a side
    stream already (concurrent packs of the inline executor each have one per chain), else this
    thread's side stream for the device, ordered after the default stream's work on entry and
    before it on exit. One stream per thread, not per pack: the caching allocator reuses a freed
    block only on the stream it was allocated on."""
    current = torch.cuda.current_stream(device)
    if current != torch.cuda.default_stream(device):
        return contextlib.nullcontext()
    streams = _THREAD.__dict__.setdefault("side_streams", {})
    if str(device) not in streams:
        streams[str(device)] = torch.cuda.Stream(device)
    stream = streams[str(device)]

    @contextlib.contextmanager
    def side():
        stream.wait_stream(current)
        try:
            with torch.cuda.stream(stream):
                yield
        finally:
            current.wait_stream(stream)
    return side()
