#!/usr/bin/env python
"""What the `train` executor costs beside the `ray` one, on a local Ray (BENCHMARKS.md):

- start-up per pack: a one-epoch pack's wall time from submission to result, less the time
  run_pack itself reports (its setup included), as a Ray task and as a Ray Train run;
- one Train run of 2 workers (2 packs) against 2 runs of 1 worker;
- gloo all-reduce of a packed network's gradients between 2 processes: what the other split
  (each model's batch across workers) would add to every step.

    python bench/train_executor_costs.py --json bench/results/train_executor_costs.json
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if not __package__:                              # run as a script, maybe from a bare checkout
    from checkout import ensure_partfer_importable  # noqa: E402  (bench/, beside this script)
    ensure_partfer_importable()


def _prepared(work: Path) -> str:
    from partfer.data_prep.pipeline import PrepRequest, prepare_datasets
    from partfer.data_prep.settings import PrepSettings
    from partfer.data_prep.synth import synthesize
    synthesize("jaffe", str(work / "synth"), subjects=4, per_class=3, seed=1, size=96)
    infos = prepare_datasets([PrepRequest(name="jaffe", layout="jaffe", root=str(work / "synth"),
                                          settings=PrepSettings(detector="none", annotator="dataset"))],
                             str(work / "store"), progress=False)
    return infos["jaffe"].path


def _chains(prepared: str, storage: Path):
    from partfer.data_prep.prepared import load_prepared
    from partfer.orchestrator.config import load_config
    from partfer.orchestrator.execution.plan import build_plan
    cfg = load_config("demo", {"image_size": 32, "networks": ["baseline"], "members": 1,
                               "train.twin_selection": None, "datasets.jaffe.epochs":
                               {"baseline": 1, "landmark": 1, "head": 1, "finetune": 1}})
    return build_plan(cfg, {"jaffe": load_prepared(prepared)}, str(storage), "cpu", "b", pack_size=2).chains


def _overhead(run, chains) -> float:
    """Wall time of running these chains less the longest pack's own time."""
    t0 = time.time()
    results = run(chains)
    return time.time() - t0 - max(r.seconds for r in results)


def executor_overheads(prepared: str, work: Path, repeats: int) -> dict:
    from partfer.orchestrator.execution.executors import run_ray
    from partfer.orchestrator.execution.progress import Progress
    from partfer.orchestrator.execution.train_executor import TrainSettings, run_train

    def quiet():
        return Progress(0, 0, 2, stream=io.StringIO())

    def task(chains):
        return run_ray(chains, quiet(), cpus_per_pack=1, gpus_per_pack=0, max_retries=0)

    def train(workers):
        def go(chains):
            return run_train(chains, quiet(), TrainSettings(workers, 1, 0, 0, str(chains[0][0].state_dir).rsplit("/packs/", 1)[0]))
        return go

    cases = {"task, 1 pack": (task, 1), "train, 1 pack, 1 worker": (train(1), 1),
             "train, 2 packs, 1 run of 2 workers": (train(2), 2), "train, 2 packs, 2 runs of 1 worker": (train(1), 2)}
    out: dict = {name: [] for name in cases}
    for r in range(repeats):
        for name, (run, n) in cases.items():
            storage = Path(tempfile.mkdtemp(prefix="pfb", dir=work))
            chains = _chains(prepared, storage)[:n]
            out[name].append(round(_overhead(run, chains), 2))
            print(f"{name}: {out[name][-1]:.1f} s", flush=True)
    return {name: {"seconds": v, "median": statistics.median(v)} for name, v in out.items()}


def _allreduce_worker(rank: int, size: int, n_floats: int, repeats: int, port: int, queue) -> None:
    import torch
    import torch.distributed as dist
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=size)
    grad = torch.ones(n_floats)
    dist.all_reduce(grad)
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(grad)
        times.append(time.perf_counter() - t0)
    if rank == 0:
        queue.put(statistics.median(times))
    dist.destroy_process_group()


def allreduce_seconds(params: int, repeats: int = 5) -> float:
    import socket

    import torch.multiprocessing as mp
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_allreduce_worker, args=(r, 2, params, repeats, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    value = queue.get(timeout=300)
    for p in procs:
        p.join()
    return value


def pack_params(models: int) -> int:
    from partfer.models.config import ArchConfig
    from partfer.models.packed import PackedNetwork
    from partfer.orchestrator.config import load_config
    net = PackedNetwork.from_arch(models, 7, None, ArchConfig.from_config(load_config("paper")["model"]),
                                  seeds=list(range(models)))
    return sum(p.numel() for p in net.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json")
    args = ap.parse_args()
    os.environ["RAY_AUTH_MODE"] = "disabled"
    import ray
    out: dict = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count()}
    for models in (5, 50):
        params = pack_params(models)
        out[f"allreduce_{models}_models"] = {"params": params, "seconds": round(allreduce_seconds(params), 4)}
        print(f"gloo all-reduce of a {models}-model pack's gradients ({params:,} floats): "
              f"{out[f'allreduce_{models}_models']['seconds'] * 1e3:.0f} ms", flush=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    with tempfile.TemporaryDirectory(prefix="pfbench") as tmp:
        work = Path(tmp)
        out["overhead_seconds"] = executor_overheads(_prepared(work), work, args.repeats)
    ray.shutdown()
    print(json.dumps(out, indent=2))
    if args.json:
        from partfer.orchestrator.storage.store import atomic_write_text
        atomic_write_text(Path(args.json), json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
