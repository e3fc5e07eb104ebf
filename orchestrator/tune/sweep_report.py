"""A finished sweep's summary: one row per trial (sweep.csv, sweep.md), accuracy and loss against
the learning rate (sweep.png), and best.yaml, a config that `partfer run --config` accepts and
that reuses the best trial's models (same settings, same keys, same store).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Callable

import yaml

from partfer.orchestrator.config import load_config, read_config_file, set_dotted
from partfer.orchestrator.storage.store import atomic_write_bytes, atomic_write_text, is_done

COLUMNS = ("trial", "lr", "batch_size", "best_val_loss", "final_val_loss", "val_acc_at_best",
           "final_val_acc", "epochs", "max_epochs", "stopped_by_scheduler", "status", "models_done")


def _num(value) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return math.nan
    return out


def collect_rows(grid, out_dirs_of: Callable[[dict], list[str]], max_t: int) -> list[dict]:
    """One row per trial from Tune's results and the store (which models were written).

    status: finished (every model's output is in the store), stopped (ASHA ended it first),
    error (the trial raised).
    """
    rows = []
    for result in grid:
        point = result.config["point"]
        df = result.metrics_dataframe
        history = [] if df is None or "val_loss" not in df else df.to_dict("records")
        losses = [_num(h["val_loss"]) for h in history]
        finite = [i for i, v in enumerate(losses) if not math.isnan(v)]
        best_i = min(finite, key=lambda i: losses[i]) if finite else None
        dirs = out_dirs_of(point)
        n_done = sum(is_done(d) for d in dirs)
        status = "error" if result.error else ("finished" if dirs and n_done == len(dirs) else "stopped")
        rows.append({
            "trial": (result.metrics or {}).get("trial_id") or (Path(result.path).name if result.path else ""),
            "lr": float(point["lr"]), "batch_size": point.get("batch_size", ""),
            "best_val_loss": losses[best_i] if best_i is not None else math.nan,
            "final_val_loss": losses[-1] if losses else math.nan,
            "val_acc_at_best": _num(history[best_i].get("val_acc")) if best_i is not None else math.nan,
            "final_val_acc": _num(history[-1].get("val_acc")) if history else math.nan,
            "epochs": int(max((_num(h["epoch"]) for h in history), default=0)),
            "max_epochs": max_t, "stopped_by_scheduler": status == "stopped",
            "status": status, "models_done": f"{n_done}/{len(dirs)}",
        })
    rows.sort(key=lambda r: (r["lr"], str(r["batch_size"])))
    return rows


def pick_best(rows: list[dict]) -> dict | None:
    """Lowest best validation loss among finished trials (their models are in the store), else
    among all trials that reported."""
    for pool in ([r for r in rows if r["status"] == "finished"], rows):
        pool = [r for r in pool if not math.isnan(r["best_val_loss"])]
        if pool:
            return min(pool, key=lambda r: r["best_val_loss"])
    return None


def _fmt(value) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def sweep_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: ("" if isinstance(r[k], float) and math.isnan(r[k]) else r[k]) for k in COLUMNS}
                     for r in rows)
    return buf.getvalue()


def sweep_markdown(rows: list[dict], best: dict | None, title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [_fmt(r[k]) for k in COLUMNS]
        if r is best:
            cells[0] = f"**{cells[0]}** (best)"
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if best:
        batch = f", batch size {best['batch_size']}" if best["batch_size"] != "" else ""
        lines.append(f"Best: lr {best['lr']}{batch} (best mean validation loss {_fmt(best['best_val_loss'])}).")
    return "\n".join(lines) + "\n"


def sweep_figure(rows: list[dict], stage: str) -> bytes:
    """Validation accuracy and loss against the rate, log x; trials ASHA stopped drawn as crosses."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    panels = (("val_acc_at_best", "validation accuracy (best epoch)"), ("best_val_loss", "best validation loss"))
    for ax, (key, label) in zip(axes, panels):
        for status, marker in (("finished", "o"), ("stopped", "x"), ("error", "s")):
            pts = [(r["lr"], r[key]) for r in rows if r["status"] == status and not math.isnan(r[key])]
            if pts:
                ax.scatter(*zip(*pts), marker=marker, label=status)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())   # minor labels overlap
        ax.set_xlabel(f"{stage} learning rate")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        if not any(not math.isnan(r[key]) for r in rows):
            ax.text(0.5, 0.5, "no values (landmark stage: no accuracy)", ha="center", transform=ax.transAxes)
    axes[1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def best_config(original: Path, overrides: dict, stage: str, best: dict, storage: str) -> str:
    """best.yaml: the original config with its includes merged in, the sweep's overrides, the best
    point. It includes nothing: an include may name only a shipped config or a file beside the
    including one, and best.yaml lies in the store, away from the user's config."""
    tree = read_config_file(str(original))
    for dotted, value in overrides.items():
        set_dotted(tree, dotted, value)
    tree["storage"] = storage                      # where the trials' models are
    set_dotted(tree, f"train.lr.{stage}", float(best["lr"]))
    if best["batch_size"] != "":
        set_dotted(tree, "train.batch_size", int(best["batch_size"]))
    # the trials' selection (tune.point_config), so the run finds their models under the same keys
    selection = load_config(str(original), dict(overrides))["train"]["selection"]
    set_dotted(tree, "train.selection", "heldout_subjects" if selection == "evaluated_fold" else selection)
    set_dotted(tree, "train.twin_selection", None)
    header = (f"# best point of a partfer tune sweep: lr {best['lr']} "
              f"(best mean validation loss {_fmt(best['best_val_loss'])}); the settings of {original}\n")
    return header + yaml.safe_dump(tree, sort_keys=False)


def write_outputs(sweep_dir: Path, rows: list[dict], best: dict | None, req, original: Path,
                  storage: str) -> dict[str, str]:
    files = {"csv": sweep_dir / "sweep.csv", "markdown": sweep_dir / "sweep.md", "figure": sweep_dir / "sweep.png"}
    title = f"Sweep: {req.network} {req.stage} on {req.dataset} ({len(rows)} trials, {req.scheduler})"
    atomic_write_text(files["csv"], sweep_csv(rows))
    atomic_write_text(files["markdown"], sweep_markdown(rows, best, title))
    atomic_write_bytes(files["figure"], sweep_figure(rows, req.stage))
    if best:
        files["best_config"] = sweep_dir / "best.yaml"
        atomic_write_text(files["best_config"], best_config(original, req.overrides, req.stage, best, storage))
    return {k: str(v) for k, v in files.items()}
