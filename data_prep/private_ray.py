"""The private local Ray that partfer starts when no cluster is given, closed to the network.

Binding cannot close it: Ray 2.60's gRPC servers (GCS, raylet, workers) listen on every
interface whatever node address they are given (`ray.init(_node_ip_address="127.0.0.1")` is turned
back into the machine's address), as `ss -ltnp` shows. Token authentication does: each start makes
a random token for that Ray alone and hands it to its processes through the environment (never
~/.ray/auth_token, which other Rays of the user would share), so a client without it is refused
on every address.

Tasks killed by Ray's memory monitor are retried a bounded number of times (Ray's default is
forever, each retry killed again at the same size): see OOM_RETRIES.
"""
from __future__ import annotations

import os
import secrets

from partfer.data_prep import ray_console

# Retries of a task killed for memory (Ray's memory monitor) before its error reaches the driver.
# One retry covers a peak that another process caused; a task that needs more memory than the
# node has is killed every time, and retrying it forever hides that from the user.
OOM_RETRIES = 2
OOM_RETRIES_ENV = "RAY_task_oom_retries"     # Ray's own setting; a value set by the user wins


def bound_oom_retries() -> None:
    """Bound the OOM retries of tasks this process submits. Ray reads the setting when this
    process joins a cluster (the owner of a task decides its retries), so call it before ray.init."""
    os.environ.setdefault(OOM_RETRIES_ENV, str(OOM_RETRIES))


def start_private_ray(num_cpus: int | None = None, runtime_env: dict | None = None) -> None:
    """Start a local Ray for this process only, with token auth on a fresh token.

    address="local": never follow a stale bootstrap file or join another cluster.
    """
    import ray
    from ray._raylet import AuthenticationTokenLoader, Config

    bound_oom_retries()
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)        # the token is this one, not a file's
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    # Ray caches the auth mode and token per process on first use; its own token-by-default path
    # refreshes them the same way after changing the environment.
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count(), include_dashboard=False,
             runtime_env=runtime_env)
    ray_console.apply()
