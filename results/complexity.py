"""Model complexity (paper Section IV-E): parameters, FLOPs (formulas 7-9) and storage, ours
beside the paper's, read from `analysis/complexity.json` (models.describe.describe()'s output).

results never imports models: the run writes the counts of the networks it actually built, and
this module only lays them out, with the explanations describe() carries for every figure that
differs from the paper's (e.g. the paper's storage figure counting the ensemble as one model).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from partfer import atomicio
from partfer.orchestrator.run_files import complexity_path
from partfer.results.markdown import markdown_table
from partfer.results.paper import COMPLEXITY_CLASSES, PAPER_IMAGE_SIZE

COMPLEXITY_COLUMNS = ["quantity", "n_classes", "unit", "ours", "ours_exact", "paper"]
# Keys every by_n_classes entry must carry (describe()'s per-class-count report).
_PER_CLASSES_KEYS = ("classifier_head_params", "subnetwork_params", "ensemble_params",
                     "subnetwork_gflops", "ensemble_gflops", "conv_flops_fraction",
                     "subnetwork_storage_mb", "subnetwork_storage_mib", "ensemble_storage_mb",
                     "ensemble_storage_mib")
_TOP_KEYS = ("image_size", "n_members", "extractor_params", "landmark_head_params",
             "by_n_classes", "paper", "notes")


class ComplexityFileError(ValueError):
    """complexity.json is unreadable or lacks what describe() writes."""


@dataclass
class ComplexityInput:
    path: Path
    report: dict | None          # describe()'s dict; None when absent or unusable
    problem: str | None = None   # why `report` is None ("absent" or the reason)

    def ensemble_params(self, n_classes: int) -> int | None:
        """Parameters of a 5-member ensemble with `n_classes` outputs, None when not recorded."""
        if self.report is None:
            return None
        entry = self.report["by_n_classes"].get(str(n_classes))
        return None if entry is None else int(entry["ensemble_params"])


def _check(report) -> None:
    if not isinstance(report, dict):
        raise ComplexityFileError("not a JSON object")
    lacking = [k for k in _TOP_KEYS if k not in report]
    if lacking:
        raise ComplexityFileError(f"lacks key(s) {', '.join(lacking)}")
    if not isinstance(report["by_n_classes"], dict) or not report["by_n_classes"]:
        raise ComplexityFileError("by_n_classes is empty")
    for n_classes, entry in report["by_n_classes"].items():
        absent = [k for k in _PER_CLASSES_KEYS if k not in entry]
        if absent:
            raise ComplexityFileError(f"by_n_classes[{n_classes!r}] lacks {', '.join(absent)}")


def load_complexity(run_dir: Path) -> ComplexityInput:
    """The run's complexity report; an absent or broken file is a stated problem, not an error."""
    path = complexity_path(run_dir)
    if not path.is_file():
        return ComplexityInput(path, None, "absent")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        _check(report)
    except (OSError, ValueError) as exc:    # JSONDecodeError and ComplexityFileError are ValueErrors
        return ComplexityInput(path, None, f"unusable ({exc})")
    return ComplexityInput(path, report)


def _millions(count) -> float:
    return round(count / 1e6, 3)


def _breakdown_key(report: dict) -> str:
    keys = report["by_n_classes"]
    return str(COMPLEXITY_CLASSES) if str(COMPLEXITY_CLASSES) in keys else max(keys, key=int)


def complexity_frame(report: dict) -> pd.DataFrame:
    """One row per quantity (and class count): ours in the paper's units, exact, and the paper's.

    The paper's figures are for its worst case (C = 8, CK+); other class counts get no paper value.
    """
    paper = report["paper"]
    rows = [["extractor parameters", "", "M", _millions(report["extractor_params"]),
             report["extractor_params"], paper.get("extractor_params_millions")]]
    paper_heads = paper.get("landmark_head_params_millions", {})
    for region, count in report["landmark_head_params"].items():
        rows.append([f"landmark head parameters ({region})", "", "M", _millions(count), count,
                     paper_heads.get(region)])
    for key in sorted(report["by_n_classes"], key=int):
        entry = report["by_n_classes"][key]
        worst = int(key) == COMPLEXITY_CLASSES
        p = (lambda name: paper.get(name)) if worst else (lambda name: None)  # noqa: E731
        flops = entry.get("flops_breakdown", {})
        rows += [
            ["classifier head parameters", key, "M", _millions(entry["classifier_head_params"]),
             entry["classifier_head_params"], p("classifier_head_params_millions")],
            ["sub-network parameters", key, "M", _millions(entry["subnetwork_params"]),
             entry["subnetwork_params"], p("subnetwork_params_millions")],
            ["ensemble parameters", key, "M", _millions(entry["ensemble_params"]),
             entry["ensemble_params"], p("ensemble_params_millions")],
            ["sub-network FLOPs", key, "GFLOPs", round(entry["subnetwork_gflops"], 4),
             int(round(entry["subnetwork_gflops"] * 1e9)), p("subnetwork_gflops")],
            ["ensemble FLOPs", key, "GFLOPs", round(entry["ensemble_gflops"], 4),
             int(round(entry["ensemble_gflops"] * 1e9)), p("ensemble_gflops")],
            ["convolution share of FLOPs", key, "%", round(100 * entry["conv_flops_fraction"], 2),
             "", None if p("conv_flops_fraction") is None else 100 * p("conv_flops_fraction")],
            ["sub-network storage", key, "MB", round(entry["subnetwork_storage_mb"], 3),
             "", p("subnetwork_storage_mb")],
            ["sub-network storage", key, "MiB", round(entry["subnetwork_storage_mib"], 3), "", None],
            ["ensemble storage", key, "MB", round(entry["ensemble_storage_mb"], 3),
             "", p("ensemble_storage_mb")],
            ["ensemble storage", key, "MiB", round(entry["ensemble_storage_mib"], 3), "", None],
        ]
        # the per-layer-type split (formulas 7, 8, 9) for the worst case only: it barely moves with C
        for part in ("conv", "dense", "pool") if key == _breakdown_key(report) else ():
            if part in flops:
                rows.append([f"sub-network FLOPs: {part} layers", key, "GFLOPs",
                             round(flops[part] / 1e9, 6), int(round(flops[part])), None])
    return pd.DataFrame(rows, columns=COMPLEXITY_COLUMNS)


_UNIT_FORMAT = {"M": ".3f", "GFLOPs": ".4g", "%": ".2f", "MB": ".3f", "MiB": ".3f"}


def _cell(value, spec: str = "g") -> str:
    if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return format(value, spec)
    return f"{value:,}" if isinstance(value, int) else str(value)


def complexity_markdown(report: dict) -> str:
    """The Section IV-E comparison: parameters, then FLOPs and storage, then the explanations."""
    frame = complexity_frame(report)
    parts = []
    size = report["image_size"]
    parts.append(f"Counted on the networks the run built (input {size}x{size}x3, "
                 f"{report['n_members']} members per ensemble; float32 = "
                 f"{report.get('bytes_per_parameter', 4)} bytes per parameter). The paper's figures "
                 f"are its worst case, the CK+ networks with {COMPLEXITY_CLASSES} outputs; "
                 "parameters include BN running statistics, as Keras counts them.\n")
    if size != PAPER_IMAGE_SIZE:
        parts.append(f"**The FLOPs below are for {size}x{size} inputs, not the paper's "
                     f"{PAPER_IMAGE_SIZE}x{PAPER_IMAGE_SIZE}.**\n")
    rows = [[r.quantity, r.n_classes or "-", r.unit, _cell(r.ours, _UNIT_FORMAT.get(r.unit, "g")),
             _cell(r.ours_exact), _cell(r.paper) or "-"] for r in frame.itertuples(index=False)]
    parts.append(markdown_table(["quantity", "outputs C", "unit", "ours", "ours (exact)", "paper"],
                                rows))
    notes = report.get("notes") or []
    if notes:
        parts.append("Why our figures differ from the paper's (from `models.describe`):\n")
        parts.append("\n".join(f"- {note}" for note in notes) + "\n")
    return "\n".join(parts)


def write_complexity(complexity: ComplexityInput, out_dir: Path) -> dict[str, Path]:
    """tables/complexity.{csv,md} when the run recorded its complexity; nothing otherwise."""
    if complexity.report is None:
        return {}
    out_dir = Path(out_dir)
    csv = complexity_frame(complexity.report).to_csv(index=False, lineterminator="\n")
    md = ("# Model complexity (Section IV-E): ours beside the paper's\n\n"
          + complexity_markdown(complexity.report))
    return {"complexity.csv": atomicio.write_text(out_dir / "complexity.csv", csv),
            "complexity.md": atomicio.write_text(out_dir / "complexity.md", md)}
