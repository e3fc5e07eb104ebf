"""Which custom kernels a pack runs. Each kernel the pack's settings switch on checks itself against
PyTorch's route the first time it would run on a device (a small batch, a tolerance: the kernel's
own comparison, models.kernels.fused_bn.compare_with_pytorch and batches.check_fused_route). One
that fails to compile, to run or to agree leaves the pack on PyTorch's route: the run goes on, says
so in one log line (once per process, kernel and device) and names the kernel in the pack's result
and its models' meta.json (`kernel_fallbacks`), so no table can come from a kernel that was not
checked on the device that ran it.
"""
from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from partfer.models.kernels import fused_bn
from partfer.models.options import ExecOptions
from partfer.orchestrator.training.batches import check_fused_route
from partfer.orchestrator.training.jobs import ExecSettings

# device -> None when the kernel agrees with PyTorch's route there, else why not (run once per device)
KernelCheck = Callable[[str], "str | None"]

CHECKS: dict[str, KernelCheck] = {
    "fused_bn": lambda device: fused_bn.self_test(device),
    "fused_augment": lambda device: fused_bn.self_test(device, check_fused_route),
}
# what each switch stands for, in the warning line
NAMES = {"fused_bn": "fused BatchNorm kernels (train.fused_bn)",
         "fused_augment": "fused augmentation kernel (train.fused_augment)"}

_REPORTED: set[tuple[str, str]] = set()
_LOCK = threading.Lock()          # packs of one process may run in threads (inline executor)


@dataclass(frozen=True)
class PackRoutes:
    """The routes a pack takes on its device, after its kernels' checks."""
    network: ExecOptions          # the network's options (fuse "off" where the fused BN kernels failed)
    fused_augment: bool           # the batch by the fused kernel
    fallbacks: dict[str, str]     # switch -> why PyTorch's route runs instead; empty when none fell back


def wanted(execution: ExecSettings, device: torch.device) -> list[str]:
    """The kernel switches that would run on this device: "on" wherever Triton runs (a CPU
    through its interpreter), "auto" on CUDA."""
    modes = {"fused_bn": execution.network.fuse, "fused_augment": execution.fused_augment}
    return [name for name, mode in modes.items() if mode == "on" or (mode == "auto" and device.type == "cuda")]


def pack_routes(execution: ExecSettings, device: torch.device, log: Callable[[str], None],
                checks: Mapping[str, KernelCheck] = CHECKS) -> PackRoutes:
    """Check every kernel the pack would run on `device` (checks: each switch's comparison with
    PyTorch's route); the ones that fail fall back to PyTorch's route, warned once a process."""
    fallbacks = {}
    for name in wanted(execution, device):
        if not fused_bn.runs_on(torch.empty(0, device=device)):
            reason = (f"Triton does not run on {device.type}" if fused_bn.triton is not None
                      else "Triton is not installed")
        else:
            reason = checks[name](str(device))
        if reason is not None:
            fallbacks[name] = reason
            _warn_once(log, name, str(device), reason)
    network = execution.network
    if "fused_bn" in fallbacks:
        network = dataclasses.replace(network, fuse="off")
    fused_augment = "fused_augment" in wanted(execution, device) and "fused_augment" not in fallbacks
    return PackRoutes(network, fused_augment, fallbacks)


def _warn_once(log: Callable[[str], None], name: str, device: str, reason: str) -> None:
    with _LOCK:
        if (name, device) in _REPORTED:
            return
        _REPORTED.add((name, device))
    log(f"WARNING: {NAMES.get(name, name)}: the check against PyTorch's route failed on {device} "
        f"({reason}); PyTorch's route runs instead")


__all__ = ["CHECKS", "KernelCheck", "PackRoutes", "pack_routes", "wanted"]
