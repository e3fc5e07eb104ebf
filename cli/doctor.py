"""`partfer doctor`: what this machine has of what partfer needs, one line each, with the fix.

Required (exit status 1 when one is missing): the SSD face detector's files and dlib's 68-point
predictor (the paper's preparation), Ray, a writable store, and Triton where a CUDA GPU is present
(the fused training kernels run on it). A machine without a GPU is reported, not refused: every
command also runs on CPUs.

Importing Ray, Triton or torch takes seconds, so the doctor reads what is installed from the
packages' metadata, and imports torch only where a GPU device node says it could see a GPU.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from partfer.cli.help_format import add_command

OK, MISSING, NOTE = "OK", "MISSING", "NOTE"


@dataclass(frozen=True)
class Check:
    status: str              # OK | MISSING | NOTE (absent, but not needed here)
    what: str
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        text = f"{self.status:<8} {self.what}: {self.detail}"
        return text + (f" -> fix: {self.fix}" if self.fix and self.status != OK else "")


def model_file_checks() -> list[Check]:
    from partfer.data_prep.errors import ModelFileError
    from partfer.data_prep.model_files import dlib_68_file, ssd_files
    checks = []
    for what, find in (("SSD face detector (caffemodel + prototxt)", lambda: ", ".join(ssd_files()[::-1])),
                       ("dlib 68-point landmark predictor", dlib_68_file)):
        try:
            checks.append(Check(OK, what, find()))
        except ModelFileError as err:
            message = str(err)
            fix = message.split("install it with ", 1)[-1].strip("`") if "install it with" in message else ""
            checks.append(Check(MISSING, what, message.split("; install", 1)[0], fix))
    return checks


def _version(module: str) -> str | None:
    """The version of an installed package, from its distribution's metadata without importing
    it (its own __version__ where it has no metadata); None when it is not installed."""
    import importlib.metadata
    try:
        if importlib.util.find_spec(module) is None:
            return None
        try:
            return importlib.metadata.version(module)
        except importlib.metadata.PackageNotFoundError:
            return str(getattr(importlib.import_module(module), "__version__", "version unknown"))
    except Exception:            # finding or importing can fail in many ways (a broken install, ABI mismatch)
        return None


@dataclass(frozen=True)
class TorchBuild:
    version: str
    cuda: str | None             # the CUDA version torch was built for, None for a CPU or ROCm build
    hip: str | None


def torch_build() -> TorchBuild | None:
    """What the installed torch was built for, read from its torch/version.py without importing
    torch; None when that file cannot be read."""
    try:
        spec = importlib.util.find_spec("torch")
        folder = list(spec.submodule_search_locations or [])[0]
        source = Path(folder, "version.py").read_text()
        values: dict = {}
        exec(compile(source, "torch/version.py", "exec"), values)
        return TorchBuild(str(values["__version__"]), values.get("cuda"), values.get("hip"))
    except Exception:            # no torch, or a layout of it we do not know: ask torch itself
        return None


def gpu_device_nodes() -> bool:
    """Whether this machine may have a GPU that CUDA can see: anything but Linux, or a Linux
    with an NVIDIA device node (/dev/nvidia*) or WSL's GPU node (/dev/dxg)."""
    if not sys.platform.startswith("linux"):
        return True
    try:
        return any(name.startswith("nvidia") or name == "dxg" for name in os.listdir("/dev"))
    except OSError:
        return True


def ray_check() -> Check:
    version = _version("ray")
    if version is None:
        return Check(MISSING, "Ray", "not importable", "pip install 'ray[data,train,tune]' (see constraints.txt)")
    return Check(OK, "Ray", version)


def gpu_checks() -> list[Check]:
    """The GPU and its driver (torch.cuda, nvidia-smi), and Triton where a GPU needs it."""
    checks = []
    build = torch_build()
    if build is not None and build.hip is None and not gpu_device_nodes():
        cuda, version, cuda_version = False, build.version, build.cuda    # no device node: no GPU to see
    else:
        import torch
        cuda, version, cuda_version = torch.cuda.is_available(), torch.__version__, torch.version.cuda
    if cuda:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        driver = nvidia_driver() or "driver version unknown (no nvidia-smi)"
        checks.append(Check(OK, "GPU", f"{names}; driver {driver}; CUDA runtime {cuda_version}"))
    else:
        why = ("this torch has no CUDA support" if cuda_version is None
               else f"torch {version} (CUDA {cuda_version}) sees no device or driver")
        checks.append(Check(NOTE, "GPU", f"none: {why}; training runs on the CPUs (slow)",
                            "install the NVIDIA driver, or torch built for CUDA", required=False))
    version = _version("triton")
    if version is not None:
        checks.append(Check(OK, "Triton", version))
    else:
        checks.append(Check(MISSING if cuda else NOTE, "Triton",
                            "not importable" + ("" if cuda else " (needed only on a CUDA GPU)"),
                            "pip install triton (or --set train.fused_bn=false train.fused_augment=false)",
                            required=cuda))
    return checks


def nvidia_driver() -> str | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    versions = sorted({line.strip() for line in out.splitlines() if line.strip()})
    return ", ".join(versions) or None


STORAGE_FIXES = {"unreachable": "check the URI and this cloud's credentials (README: stores)",
                 "not_a_folder": "give --out a folder", "read_only": "give --out a folder you can write"}


def storage_check(storage: str) -> Check:
    """Whether the store can be written: a probe object at a URI, a probe file in a local folder
    (or in the nearest existing folder above one that a run would create)."""
    from partfer.orchestrator.storage.remote import redact
    from partfer.orchestrator.storage.root import open_store
    probe = open_store(os.path.expanduser(storage)).probe()
    return Check(OK if probe.ok else MISSING, f"storage {redact(storage)}", probe.detail,
                 STORAGE_FIXES.get(probe.problem, ""))


def run_checks(storage: str) -> list[Check]:
    return [*model_file_checks(), ray_check(), *gpu_checks(), storage_check(storage)]


# ---- command line ---------------------------------------------------------------------------------------

HELP = "check model files, Ray, Triton, the GPU and driver, and the store"
DESCRIPTION = ("One line per thing partfer needs: OK, MISSING (with the fix) or NOTE (absent but not "
               "needed here). Exit status 1 when something required is missing.")


def add_doctor_parser(subparsers, with_arguments: bool = True) -> argparse.ArgumentParser:
    parser = add_command(subparsers, "doctor", HELP, DESCRIPTION)
    if with_arguments:
        parser.add_argument("--config", default="paper", help="config whose `storage` is checked when --out is not given")
        parser.add_argument("--out", default=None, help="storage root to check: a path or a URI (left out: the config's)")
        parser.set_defaults(func=doctor_command)
    return parser


def doctor_command(args: argparse.Namespace) -> int:
    storage = args.out
    if storage is None:
        from partfer.orchestrator.config import load_config
        storage = str(load_config(args.config)["storage"])
    checks = run_checks(os.path.expanduser(storage))
    for check in checks:
        print(check.line())
    missing = [c for c in checks if c.status == MISSING and c.required]
    if missing:
        print(f"partfer doctor: {len(missing)} required item(s) missing", file=sys.stderr)
        return 1
    return 0
