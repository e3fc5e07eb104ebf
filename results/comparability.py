"""Why a run's numbers cannot be set beside the paper's (shrunk settings, synthetic data...).

A demo or test run produces real accuracies of a different experiment; printing them next to
the paper's without saying so would mislead. Settings keys read: shrunk_reasons (the run's own
list of departures, written by the orchestrator), else shrunk (bool, text, list or mapping of
flags), epochs_scale, image_size, synthetic (bool, text or list of data sets); status (a run
still "running" is partial).
"""
from __future__ import annotations

from collections.abc import Mapping

from partfer.orchestrator.records import RunPlan
from partfer.results.paper import PAPER_FOLDS, PAPER_IMAGE_SIZE, PAPER_MEMBERS, display_name


def _flag_text(value) -> str:
    """A truthy flag value as words: a list/mapping names its parts, text is kept."""
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()) if v)
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(v) for v in sorted(value, key=str))
    return value if isinstance(value, str) else ""


def synthetic_note(plan: RunPlan) -> str | None:
    """A sentence when the run trained on generated faces, else None."""
    flag = plan.settings.get("synthetic")
    if not flag:
        return None
    detail = _flag_text(flag)
    return "trained and tested on synthetic faces" + (f" ({detail})" if detail else "")


def _recorded_reasons(settings: dict) -> list[str] | None:
    """The orchestrator's own list of departures, or None for plans that do not carry one."""
    recorded = settings.get("shrunk_reasons")
    if recorded is None:
        return None
    if isinstance(recorded, str):
        return [recorded]
    return [str(r) for r in recorded]


def _derived_settings_reasons(plan: RunPlan) -> list[str]:
    """Departures read off individual settings, for plans without shrunk_reasons."""
    settings = plan.settings
    reasons: list[str] = []
    shrunk = settings.get("shrunk")
    if shrunk:
        detail = _flag_text(shrunk)
        reasons.append("run marked shrunk" + (f" ({detail})" if detail else ""))
    scale = settings.get("epochs_scale")
    if isinstance(scale, (int, float)) and scale < 1:
        reasons.append(f"epochs scaled by {scale:g} (paper: full epochs)")
    size = settings.get("image_size")
    if isinstance(size, (int, float)) and size != PAPER_IMAGE_SIZE:
        reasons.append(f"image size {size:g} (paper: {PAPER_IMAGE_SIZE})")
    note = synthetic_note(plan)
    if note:
        reasons.append(note)
    return reasons


def _structural_reasons(plan: RunPlan) -> list[str]:
    """Fold and member counts that differ from the paper's protocol (read off the plan)."""
    reasons: list[str] = []
    trained = {record.dataset for record in plan.models}
    for name, info in sorted(plan.datasets.items()):
        paper_folds = PAPER_FOLDS.get(name)
        if name not in trained:      # only tested on: its folds are not a protocol of this run
            continue
        if paper_folds and info.protocol != "holdout" and len(info.folds) != paper_folds:
            reasons.append(f"{display_name(name)}: {len(info.folds)} folds (paper: {paper_folds})")
    members: dict[tuple[str, str], set[str]] = {}
    for record in plan.models:
        members.setdefault((record.dataset, record.network), set()).add(record.member)
    for (dataset, network), names in sorted(members.items()):
        if len(names) != PAPER_MEMBERS:
            reasons.append(f"{display_name(dataset)} {network}: {len(names)} members "
                           f"(paper: {PAPER_MEMBERS})")
    return reasons


def shrink_reasons(plan: RunPlan) -> list[str]:
    """Each way the run departs from the paper's protocol; empty when it follows it.

    The run's recorded `shrunk_reasons` are shown as written (they compare against the paper's
    config, epochs included); without them the settings are read one by one. Fold and member
    counts are always checked here, from the plan itself.
    """
    recorded = _recorded_reasons(plan.settings)
    reasons = recorded if recorded is not None else _derived_settings_reasons(plan)
    return reasons + [r for r in _structural_reasons(plan) if r not in reasons]


def partial_note(plan: RunPlan) -> str | None:
    """A sentence when the run has not finished (plan.json written at its start), else None."""
    status = plan.settings.get("status")
    if status is None or status == "finished":
        return None
    return (f"the run's status is {status!r}, not finished: models still training have no "
            "predictions yet and are listed as missing")


def warning_line(plan: RunPlan) -> str | None:
    """The bold line set above any table compared with the paper, or None for a faithful run."""
    reasons = shrink_reasons(plan)
    if not reasons:
        return None
    return ("**WARNING: these numbers are NOT comparable with the paper's: "
            + "; ".join(reasons) + ".**")
