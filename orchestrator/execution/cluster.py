"""Which Ray to run on, and whether the store can be shared by every node of it.

Three cases, in this order:
1. an address is given (argument or RAY_ADDRESS, which `ray job submit` and `ray submit` set):
   connect to it with the cluster's own auth settings;
2. a cluster started with `ray start` is running on this machine: connect to it. Ray records its
   address in `<temp dir>/ray_current_cluster`, but that file outlives the cluster, so the address
   is only trusted while a raylet process serving it is alive (a stale file starts a local Ray);
3. otherwise start a private local Ray on this machine's CPUs, closed to the network by a token
   of its own (data_prep.private_ray). It is started with address="local" so that `ray.init`
   itself never follows a stale bootstrap file or joins another user's cluster.
In every case the tasks this driver submits get a bounded number of retries after being killed
for memory (private_ray.OOM_RETRIES).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from partfer.data_prep import ray_console
from partfer.data_prep.private_ray import bound_oom_retries, start_private_ray
from partfer.orchestrator.storage.remote import CACHE_ENV
from partfer.orchestrator.storage.root import open_store

class StorageNotSharedError(ValueError):
    """The store is a local path but the run's tasks may land on other machines."""


@dataclass(frozen=True)
class ClusterInfo:
    address: str              # GCS address ("host:port") of the cluster in use
    nodes: int                # alive nodes now
    cpus: float
    gpus: float
    started_here: bool        # True: a private local Ray this process started
    autoscaling: bool         # an autoscaler on this machine may add nodes later


def find_local_cluster(temp_dir: str | None = None) -> str | None:
    """Address of the live cluster last started with `ray start` on this machine, else None."""
    from ray._common.utils import get_ray_address_file
    from ray._private.services import find_gcs_addresses

    path = Path(get_ray_address_file(temp_dir))
    try:
        address = path.read_text().strip()
    except OSError:
        return None
    if not address:
        return None
    # the file is never removed when the cluster dies: trust it only while a raylet serves it
    # (Ray caches a non-empty process scan for the life of the process: look afresh)
    find_gcs_addresses.cache_clear()
    return address if address in find_gcs_addresses() else None


def autoscaler_running_here(gcs_address: str) -> bool:
    """Whether this machine runs the autoscaler of that cluster with a cluster config (`ray up`
    heads do), i.e. whether nodes may join after we looked."""
    import ray  # noqa: F401  (first: it puts its bundled psutil on sys.path)
    import psutil

    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or ())
        except (psutil.AccessDenied, psutil.NoSuchProcess):
            continue
        if "--autoscaling-config" in cmd and f"--gcs-address={gcs_address}" in cmd:
            return True
    return False


def _describe(started_here: bool) -> ClusterInfo:
    import ray

    address = ray.get_runtime_context().gcs_address
    resources = ray.cluster_resources()
    return ClusterInfo(address=address, nodes=sum(1 for n in ray.nodes() if n["Alive"]),
                       cpus=float(resources.get("CPU", 0.0)), gpus=float(resources.get("GPU", 0.0)),
                       started_here=started_here,
                       autoscaling=not started_here and autoscaler_running_here(address))


def keep_every_log_line() -> None:
    """Turn off Ray's log de-duplication in this driver: it folds identical lines of different
    workers into "[repeated Nx across cluster]", and two packs of different folds often log
    the same line (same data set, stage, epoch). The driver de-duplicates (workers do not), and
    reads RAY_DEDUP_LOGS when Ray is imported: a Ray imported earlier is switched off in place."""
    os.environ["RAY_DEDUP_LOGS"] = "0"
    import sys
    logging_module = sys.modules.get("ray._private.ray_logging")
    if logging_module is not None and getattr(logging_module, "RAY_DEDUP_LOGS", False):
        logging_module.RAY_DEDUP_LOGS = False


def connect(address: str | None = None, temp_dir: str | None = None) -> ClusterInfo:
    """Join the cluster to use (see the module docstring for the order) and describe it.
    Idempotent: when Ray is already initialised in this process, only describes it."""
    keep_every_log_line()
    import ray

    ray_console.apply()
    if ray.is_initialized():
        return _describe(started_here=False)
    bound_oom_retries()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        ray.init(address=address)
        return _describe(started_here=False)
    # workers import partfer from the same installation as this driver; only the cache of URI
    # stores (a same-machine path) travels with them
    env_vars = {CACHE_ENV: os.environ[CACHE_ENV]} if os.environ.get(CACHE_ENV) else {}
    runtime_env = {"env_vars": env_vars} if env_vars else None
    local = find_local_cluster(temp_dir)
    if local is not None:
        ray.init(address=local, runtime_env=runtime_env)
        return _describe(started_here=False)
    start_private_ray(runtime_env=runtime_env)
    return _describe(started_here=True)


def check_storage(storage: str, n_nodes: int, shared: bool = False, may_grow: bool = False) -> None:
    """Refuse a store that some nodes of the cluster would not see.

    Every task writes checkpoints and predictions under the store and the driver reads them back,
    so on more than one node (or on a cluster whose autoscaler may add nodes) the store must be an
    object-store URI or a path the user declares mounted on every node (`storage_shared: true`).
    """
    if shared or open_store(storage).reaches_every_node or (n_nodes <= 1 and not may_grow):
        return
    why = f"{n_nodes} nodes" if n_nodes > 1 else "an autoscaling cluster (nodes may join)"
    raise StorageNotSharedError(
        f"store {storage} is a local path but the Ray cluster has {why}: use an object-store URI "
        f"(s3://, gs://) or a path mounted on every node with --shared-storage (config storage_shared: true)")
