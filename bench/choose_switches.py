"""The opt-in speed switches a GPU run turns on, chosen from the bench's JSON (bench/gpu_session.sh).

A switch is on when the bench just measured its variant at least 3 % faster than the variant it
would replace and, where the bench checks it, found it computing the same; the environment
overrides each (GREY, TCONV, GRAPHS = on | off; auto, the default: as measured). Missing figures
(a bench cut short, a CPU dry run) leave a switch off. Prints the run's `--set` arguments.

    python bench/choose_switches.py BENCH_JSON
"""
from __future__ import annotations

import json
import os
import sys

GAIN = 1.03      # the least speed-up worth switching for: the device's run-to-run noise is ~1-2 %


def _fused_grey_same(out: dict) -> bool:
    check = out.get("check_training")
    return check is None or check["fused"]["params"] <= max(3 * check["pad"]["params"], 1e-4)


def _tconv_same(out: dict) -> bool:
    check = out["check_training"]
    return check["tconv"]["params"] <= max(3 * check["pad"]["params"], 1e-4)


def _graphs_same(out: dict) -> bool:
    check = out["check_graphs"]
    noise = check["eager_vs_eager"]["params_rel"]
    return (check["graph_replays"] > 0 and check["held_moved"] == 0
            and check["graph_vs_eager"]["params_rel"] <= max(3 * noise, 1e-4))


# env variable -> (setting, faster variant, the variant it replaces, its correctness check)
SWITCHES = {
    "GREY": ("train.fused_grey_conv", "packed-fusegrey", "packed", _fused_grey_same),
    "TCONV": ("train.triton_conv", "packed-tconv", "packed", _tconv_same),
    "GRAPHS": ("train.cuda_graphs", "small-graph", "small", _graphs_same),
}


def choose(out: dict | None, env: dict) -> list[str]:
    """The settings to turn on ("train.x=true"), from the bench's output (None: no bench)."""
    chosen = []
    for var, (setting, variant, base, same) in SWITCHES.items():
        mode = env.get(var, "auto")
        if mode not in ("auto", "on", "off"):
            raise SystemExit(f"{var} must be auto, on or off, not {mode!r}")
        if mode == "auto":
            try:
                rates = {r["variant"]: r["images_per_s"] for r in out["results"]}
                on = rates.get(variant, 0) >= GAIN * rates.get(base, float("inf")) and same(out)
            except (TypeError, KeyError):
                on = False
        else:
            on = mode == "on"
        if on:
            chosen.append(f"{setting}=true")
    return chosen


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        raise SystemExit(__doc__)
    try:
        with open(argv[0]) as f:
            out = json.load(f)
    except (OSError, ValueError):
        out = None
    print(" ".join(f"--set {s}" for s in choose(out, dict(os.environ))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
