#!/usr/bin/env python
"""Compile every Triton kernel a training step launches for GPUs that are not here, and read
what each compiled kernel needs: registers, spills, shared memory, theoretical occupancy and
whether its matrix products run on the tensor cores.

Why: on a CPU the kernels run only in Triton's interpreter, which compiles nothing, so a kernel
that the compiler rejects (a matrix product too small for the tensor cores, shared memory over a
GPU's limit), or that spills registers, was found only on a lent GPU, in its few minutes. Triton
compiles ahead of time with no GPU (its own ptxas), so here it can compile what training
launches, at the exact launch arguments: one packed training step at the paper's sizes runs on
the CPU with the launches recorded instead of run (models.kernels.fused_bn.recording), each distinct
launch (kernel, argument types and Triton's specialisation of them, compile-time constants,
warps) is compiled for each architecture asked for, and cuobjdump reads the cubin.

    python bench/compile_kernels.py                          # the paper's pack, sm_90 and sm_86
    python bench/compile_kernels.py --arch 90 --routes baseline,splitcopy --json out.json
    python bench/compile_kernels.py --pack 3 --batch 2 --image-size 32   # small and quick

Routes (--routes): baseline (the default CUDA path: fused augmentation, the grey conv padded,
split convs read in place by the fused BN kernels, cuDNN's convs), splitcopy (split outputs
interleaved first). Each route also runs a
forward and backward of a compacted pack (a subset of its models: the running statistics'
indexed update). Exits 1 if a kernel fails to compile or needs more shared memory than a GPU of
that architecture has; spills are reported, not failed. Must run without TRITON_INTERPRET (the
interpreter replaces the kernels' helper functions).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

if not __package__:                              # run as a script, maybe from a bare checkout
    from checkout import ensure_partfer_importable  # noqa: E402  (bench/, beside this script)
    ensure_partfer_importable()

import torch  # noqa: E402

# Per-SM limits (CUDA programming guide, "compute capabilities"): registers, resident warps and
# blocks, shared memory per SM and the most one block may use. 1 KiB per block is reserved by
# the system on sm_80 and newer.
ARCHS = {
    90: dict(gpus="H100, H200", regs=65536, warps=64, blocks=32, smem_sm=228 * 1024, smem_block=227 * 1024),
    86: dict(gpus="A10G, RTX 30xx", regs=65536, warps=48, blocks=16, smem_sm=100 * 1024, smem_block=99 * 1024),
    80: dict(gpus="A100", regs=65536, warps=64, blocks=32, smem_sm=164 * 1024, smem_block=163 * 1024),
}
RESERVED_SMEM = 1024
ROUTES = {
    "baseline": {},
    "splitcopy": {"interleave_mode": "copy"},
}
TENSOR_CORE_OPS = re.compile(r"\b(HMMA|HGMMA|IMMA|IGMMA)\b")
TRITON_VERSIONS = ("3.",)      # the JIT internals used by _specialise


@dataclass
class Compiled:
    """One distinct launch compiled for one architecture."""
    kernel: str
    arch: int
    routes: list[str]
    constants: dict
    signature: str
    num_warps: int
    launches: int = 0
    error: str | None = None
    regs: int = 0
    local_bytes: int = 0           # local memory per thread: register spills (or local arrays)
    stack_bytes: int = 0
    shared_bytes: int = 0
    occupancy: float = 0.0
    limited_by: str = ""
    tensor_core_ops: int = 0
    tensor_core_kinds: list[str] = field(default_factory=list)    # HGMMA: Hopper's warpgroup MMA
    fma_ops: int = 0
    wide_loads: int = 0            # 16-byte global loads (LDG.*.128)
    narrow_loads: int = 0          # 1- and 2-byte ones: a load split up (or a gather)
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)


def _tool(name: str) -> str:
    import triton
    path = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if not path.exists():
        raise SystemExit(f"{path} is missing: this Triton has no NVIDIA tools to read a cubin with")
    return str(path)


def occupancy(regs: int, num_warps: int, shared: int, arch: int) -> tuple[float, str]:
    """Theoretical occupancy (resident warps / the SM's maximum) and what limits it, by the CUDA
    occupancy calculator's rules: registers allocated per warp in units of 256, shared memory
    per block plus the reserved 1 KiB."""
    spec = ARCHS[arch]
    per_warp = math.ceil(max(regs, 1) * 32 / 256) * 256
    limits = {
        "registers": (spec["regs"] // per_warp) // num_warps,
        "warps": spec["warps"] // num_warps,
        "blocks": spec["blocks"],
        "shared memory": spec["smem_sm"] // (shared + RESERVED_SMEM) if shared else spec["blocks"],
    }
    blocks = min(limits.values())
    limit = min(limits, key=lambda k: (limits[k], k != "warps"))
    return blocks * num_warps / spec["warps"], limit


def resources(cubin: bytes) -> dict:
    """REG / STACK / SHARED / LOCAL of the cubin's kernel (cuobjdump --dump-resource-usage), and
    from its machine code (cuobjdump -sass) the tensor-core and FFMA instructions and the global
    loads by width (static counts: instructions in the code, not executed ones)."""
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(cubin)
    try:
        usage = subprocess.run([_tool("cuobjdump"), "--dump-resource-usage", f.name], capture_output=True,
                               text=True, check=True).stdout
        sass = subprocess.run([_tool("cuobjdump"), "-sass", f.name], capture_output=True, text=True,
                              check=True).stdout
    finally:
        os.unlink(f.name)
    found = {k: int(v) for k, v in re.findall(r"\b(REG|STACK|SHARED|LOCAL):(\d+)", usage)}
    if "REG" not in found:
        raise RuntimeError(f"cuobjdump printed no resource usage: {usage[:300]!r}")
    return {"regs": found["REG"], "stack_bytes": found.get("STACK", 0), "local_bytes": found.get("LOCAL", 0),
            "static_shared": found.get("SHARED", 0), "tensor_core_ops": len(TENSOR_CORE_OPS.findall(sass)),
            "tensor_core_kinds": sorted(set(TENSOR_CORE_OPS.findall(sass))),
            "fma_ops": len(re.findall(r"\bFFMA\b", sass)),
            "wide_loads": len(re.findall(r"\bLDG(?:\.[A-Z0-9_]+)*\.128\b", sass)),
            "narrow_loads": len(re.findall(r"\bLDG\.E(?:\.(?:U8|S8|U16|S16))\b", sass))}


_JITS: dict = {}


def _specialise(fn, args: tuple, meta: dict, target):
    """What Triton's JIT would compile for this launch: (signature, constants, attributes,
    options), from Triton's own binder (argument types, the alignment and divisibility by 16 of
    pointers and integers, constexprs)."""
    import triton
    from triton.compiler import make_backend
    from triton.runtime.jit import JITFunction, create_function_from_signature
    if not triton.__version__.startswith(TRITON_VERSIONS):
        raise SystemExit(f"bench/compile_kernels.py follows the JIT internals of Triton {TRITON_VERSIONS}, "
                         f"found {triton.__version__}")
    jit = _JITS.get(fn)
    if jit is None:
        jit = _JITS[fn] = JITFunction(fn)
    backend = make_backend(target)
    binder = create_function_from_signature(jit.signature, jit.params, backend)
    meta = dict(meta)
    bound, specialisation, options = binder(*args, **meta)
    options, signature, constants, attrs = jit._pack_args(backend, meta, bound, specialisation, options)
    return jit, signature, constants, attrs, options


def _describe(jit, signature: dict, constants: dict, attrs: dict) -> tuple[dict, str]:
    names = list(jit.arg_names)
    consts = {names[k[0]] if isinstance(k, tuple) else k: v for k, v in constants.items()}
    aligned = {names[k[0]] for k in attrs}
    types = ", ".join(f"{n}:{t}{'/16' if n in aligned else ''}" for n, t in signature.items() if t != "constexpr")
    return consts, types


def compile_launches(launches, archs: list[int], route: str, done: dict, echo=print) -> None:
    """Compile each distinct launch (for each arch) into `done` (keyed by what Triton would
    cache a kernel by), counting repeats."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    for launch in launches:
        for arch in archs:
            target = GPUTarget("cuda", arch, 32)
            jit, signature, constants, attrs, options = _specialise(launch.fn, launch.args, launch.meta, target)
            consts, types = _describe(jit, signature, constants, attrs)
            key = (launch.fn, arch, types, repr(sorted(consts.items())), options.num_warps)
            entry = done.get(key)
            if entry is not None:
                entry.launches += 1
                if route not in entry.routes:
                    entry.routes.append(route)
                continue
            entry = done[key] = Compiled(kernel=f"{launch.fn.__module__}.{launch.fn.__name__}", arch=arch,
                                         routes=[route], constants=consts, signature=types,
                                         num_warps=options.num_warps, launches=1)
            start = time.perf_counter()
            try:
                kernel = triton.compile(ASTSource(jit, signature, constants, attrs), target=target,
                                        options=options.__dict__)
                used = resources(kernel.asm["cubin"])
            except Exception as exc:   # the point: report every kernel that does not compile
                entry.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"[:400]
                entry.problems.append("does not compile")
                entry.seconds = time.perf_counter() - start
                echo(f"  sm_{arch} {entry.kernel}: FAILED {entry.error}")
                continue
            entry.seconds = time.perf_counter() - start
            entry.regs, entry.local_bytes, entry.stack_bytes = used["regs"], used["local_bytes"], used["stack_bytes"]
            entry.tensor_core_ops, entry.fma_ops = used["tensor_core_ops"], used["fma_ops"]
            entry.tensor_core_kinds = used["tensor_core_kinds"]
            entry.wide_loads, entry.narrow_loads = used["wide_loads"], used["narrow_loads"]
            entry.shared_bytes = max(int(kernel.metadata.shared), used["static_shared"])
            entry.occupancy, entry.limited_by = occupancy(entry.regs, entry.num_warps, entry.shared_bytes, arch)
            entry.problems.extend(verdict(entry))
            echo(f"  sm_{arch} {entry.kernel} {_constants_text(consts)}: {entry.regs} regs, "
                 f"{entry.shared_bytes} B shared, {entry.occupancy:.0%} occupancy ({entry.seconds:.1f} s)")


def verdict(entry: Compiled) -> list[str]:
    """What is wrong with a compiled kernel: shared memory over the architecture's per-block
    limit fails (the launch would), spills are flagged."""
    out = []
    limit = ARCHS[entry.arch]["smem_block"]
    if entry.shared_bytes > limit:
        out.append(f"needs {entry.shared_bytes} B of shared memory, sm_{entry.arch} allows {limit} per block")
    if entry.local_bytes or entry.stack_bytes:
        out.append(f"spills: {entry.local_bytes} B local, {entry.stack_bytes} B stack per thread")
    return out


def failed(entry: Compiled) -> bool:
    return entry.error is not None or entry.shared_bytes > ARCHS[entry.arch]["smem_block"]


def _constants_text(consts: dict) -> str:
    return " ".join(f"{k}={int(v) if isinstance(v, bool) else v}" for k, v in sorted(consts.items()))


def record_step(route: str, pack: int, batch: int, image_size: int, n_images: int = 64) -> list:
    """The kernel launches of one packed training step along `route` (as on CUDA: bf16 autocast,
    channels-last, fused augmentation), then of a forward and backward of half the pack (a
    compacted pack), recorded on the CPU."""
    if __package__:                                  # imported as bench.compile_kernels (the tests)
        from bench.train_throughput import make_step
    else:                                            # run as a script: bench/ is on sys.path
        from train_throughput import make_step
    from partfer.models.kernels import fused_bn
    settings = dict(split_mode="on", fuse_mode="on", augment="on", **ROUTES[route])
    with fused_bn.recording() as launches:
        step = make_step(pack, "cpu", image_size, batch, "bf16", True, n_images=n_images, **settings)
        step()
        net = step.net
        subset = net.model_index(list(range(0, pack, 2)))
        # laid out as the trainer's batches are (models.kernels.warp.warp_batch): each
        # pixel's models adjacent
        x = torch.rand(batch, image_size, image_size, len(subset)).to(torch.bfloat16).permute(0, 3, 1, 2).unsqueeze(2)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net.classifier(net.features(x, models=subset).transpose(0, 1), subset)
        out.float().sum().backward()
    return launches


def _tile_tables() -> dict:
    from partfer.models.kernels import fused_bn, warp
    return {"bn": fused_bn.TILES, "augment": warp.TILES}



def set_tiles(settings: list[str]) -> dict:
    """Apply TABLE.KEY=VALUE settings to the kernels' tile tables (models.kernels.fused_bn.TILES,
    models.kernels.warp.TILES), e.g. to check the tiles a
    GPU sweep will try before it tries them. Returns what was set."""
    tables, done = _tile_tables(), {}
    for setting in settings:
        name, _, value = setting.partition("=")
        table, _, key = name.partition(".")
        if table not in tables or key not in tables[table] or not value:
            raise SystemExit(f"--tile {setting!r}: expected TABLE.KEY=VALUE with TABLE one of "
                             f"{', '.join(tables)} and KEY one of its keys "
                             f"({', '.join(f'{t}: {sorted(tables[t])}' for t in tables)})")
        old = tables[table][key]
        try:
            if isinstance(old, bool):
                new = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}[value.lower()]
            else:
                new = type(old)(value)
        except (KeyError, ValueError):
            raise SystemExit(f"--tile {setting!r}: {value!r} is not a valid {type(old).__name__}") from None
        tables[table][key] = done[name] = new
    return done


def run(archs: list[int], routes: list[str], pack: int, batch: int, image_size: int, echo=print) -> list[Compiled]:
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise SystemExit("unset TRITON_INTERPRET: Triton's interpreter replaces the kernels' helper "
                         "functions, which then cannot be compiled")
    for arch in archs:
        if arch not in ARCHS:
            raise SystemExit(f"unknown architecture {arch}; known: {', '.join(map(str, ARCHS))}")
    done: dict = {}
    for route in routes:
        if route not in ROUTES:
            raise SystemExit(f"unknown route {route!r}; known: {', '.join(ROUTES)}")
        start = time.perf_counter()
        launches = record_step(route, pack, batch, image_size)
        echo(f"route {route}: {len(launches)} launches recorded in {time.perf_counter() - start:.1f} s; compiling")
        compile_launches(launches, archs, route, done, echo)
    return list(done.values())


def table(entries: list[Compiled]) -> str:
    head = ("| arch | kernel | constants | warps | launches | regs | spill B | shared B | occupancy (limit) "
            "| tensor-core / FFMA instr. | loads 16 B / 1-2 B | routes | problems |")
    rows = [head, "|" + "---|" * 13]
    for e in sorted(entries, key=lambda e: (-e.arch, e.kernel, _constants_text(e.constants))):
        name = e.kernel.rsplit(".", 1)[-1]
        module = e.kernel.rsplit(".", 2)[-2]
        if e.error:
            rows.append(f"| sm_{e.arch} | {module}.{name} | {_constants_text(e.constants)} | {e.num_warps} | "
                        f"{e.launches} | | | | | | | {','.join(e.routes)} | {e.error} |")
            continue
        rows.append(f"| sm_{e.arch} | {module}.{name} | {_constants_text(e.constants)} | {e.num_warps} | "
                    f"{e.launches} | {e.regs} | {e.local_bytes + e.stack_bytes} | {e.shared_bytes} | "
                    f"{e.occupancy:.0%} ({e.limited_by}) | {e.tensor_core_ops}{_kinds(e)} / {e.fma_ops} | "
                    f"{e.wide_loads} / {e.narrow_loads} | "
                    f"{','.join(e.routes)} | {'; '.join(e.problems)} |")
    return "\n".join(rows)


def _kinds(e: Compiled) -> str:
    return f" {'+'.join(e.tensor_core_kinds)}" if e.tensor_core_kinds else ""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="90,86", help="compute capabilities, comma list (default 90,86: "
                    "the lent H200 and cluster.yaml's A10G)")
    ap.add_argument("--routes", default=",".join(ROUTES), help=f"comma list of {', '.join(ROUTES)}")
    ap.add_argument("--pack", type=int, default=50, help="models per pack (paper.yaml: 50)")
    ap.add_argument("--batch", type=int, default=2, help="images per model (tile choices do not depend "
                    "on it; 2 keeps the CPU's share quick)")
    ap.add_argument("--image-size", type=int, default=160)
    ap.add_argument("--tile", action="append", default=[], metavar="TABLE.KEY=VALUE",
                    help="compile with another tile setting, e.g. bn.rows=128 or bn.warps=8 (tables: "
                    f"{', '.join(_tile_tables())}); repeatable")
    ap.add_argument("--json", type=Path, help="write every compiled kernel's figures here")
    args = ap.parse_args(argv)
    tiles = set_tiles(args.tile)
    archs = [int(a) for a in args.arch.split(",") if a]
    routes = [r for r in args.routes.split(",") if r]
    import triton
    torch.manual_seed(0)
    start = time.perf_counter()
    entries = run(archs, routes, args.pack, args.batch, args.image_size)
    print()
    print(f"pack {args.pack}, batch {args.batch} per model, {args.image_size} px; Triton {triton.__version__}, "
          f"torch {torch.__version__}; {time.perf_counter() - start:.0f} s"
          + (f"; tiles {', '.join(f'{k}={v}' for k, v in tiles.items())}" if tiles else ""))
    print(table(entries))
    bad = [e for e in entries if failed(e)]
    if args.json:
        tmp = args.json.with_suffix(args.json.suffix + ".tmp")
        tmp.write_text(json.dumps({"pack": args.pack, "batch": args.batch, "image_size": args.image_size,
                                   "tiles": tiles,
                                   "triton": triton.__version__, "torch": torch.__version__,
                                   "kernels": [asdict(e) for e in entries]}, indent=1, default=str))
        tmp.replace(args.json)
    if bad:
        print(f"\n{len(bad)} kernel(s) cannot run: " + "; ".join(
            f"sm_{e.arch} {e.kernel} ({e.error or '; '.join(e.problems)})" for e in bad), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
