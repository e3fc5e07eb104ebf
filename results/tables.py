"""Table I (and Table III when the run tested across data sets) as CSV and Markdown.

CSV cells are accuracies in % with 2 decimals (the paper's precision), empty where a system
has no scored predictions. The Markdown sets each row beside the paper's and states every
fold or model that is missing, so an incomplete number is never mistaken for a full one.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from results import atomic
from results.comparability import warning_line
from results.evaluate import RunEvaluation, SystemScore
from results.paper import COLUMNS, EL_PARAMS_MILLIONS, TABLE1, TABLE2, TABLE3, display_name

TABLES_DIR = "tables"


def pct(value: float | None) -> str:
    """A fraction as a % with 2 decimals; empty for an absent number."""
    return "" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _accuracy_cells(ev: RunEvaluation, train: str, test: str) -> list[float | None]:
    """Mean-over-folds accuracy (fraction) of each Table I column for one pair."""
    cells = []
    for column in COLUMNS:
        score = ev.score(train, test, column)
        cells.append(None if score is None or math.isnan(score.mean_accuracy) else score.mean_accuracy)
    return cells


def _round_pct(value: float | None) -> float:
    return float("nan") if value is None else round(100 * value, 2)


def table1_frame(ev: RunEvaluation) -> pd.DataFrame:
    """One row per trained data set tested on itself; columns dataset + Table I columns."""
    rows = [[train] + [_round_pct(v) for v in _accuracy_cells(ev, train, test)]
            for train, test in ev.self_pairs]
    return pd.DataFrame(rows, columns=["dataset", *COLUMNS])


def table3_frame(ev: RunEvaluation) -> pd.DataFrame:
    """Cross-data-set rows, each trained data set's own test row first (Table III layout)."""
    rows = []
    for train in sorted({t for t, _ in ev.cross_pairs}):
        pairs = [(train, train)] if (train, train) in ev.pairs else []
        pairs += [p for p in ev.cross_pairs if p[0] == train]
        rows += [[t, s] + [_round_pct(v) for v in _accuracy_cells(ev, t, s)] for t, s in pairs]
    return pd.DataFrame(rows, columns=["train_dataset", "test_dataset", *COLUMNS])


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.2f", lineterminator="\n")


def pair_title(train: str, test: str) -> str:
    if train == test:
        return f"{display_name(train)} (`{train}`)"
    return f"{display_name(train)} -> {display_name(test)} (`{train}` tested on `{test}`)"


def _paper_row(train: str, test: str) -> dict[str, float] | None:
    return TABLE1.get(train) if train == test else TABLE3.get((train, test))


def comparison_markdown(ev: RunEvaluation, train: str, test: str) -> str:
    """Our row, the paper's row and the difference (percentage points) for one pair."""
    ours = _accuracy_cells(ev, train, test)
    paper = _paper_row(train, test)
    rows = [["ours (mean over folds)"] + [pct(v) for v in ours]]
    if paper is None:
        rows.append(["paper"] + ["n/a"] * len(COLUMNS))
    else:
        rows.append(["paper"] + [f"{paper[c]:.2f}" for c in COLUMNS])
        rows.append(["difference"] + [
            "" if v is None else f"{100 * v - paper[c]:+.2f}" for v, c in zip(ours, COLUMNS)])
    text = markdown_table(["", *COLUMNS], rows)
    notes = pair_notes(ev, train, test)
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def pair_notes(ev: RunEvaluation, train: str, test: str) -> list[str]:
    """Missing folds, unscored systems and dropped classes behind one pair's numbers."""
    notes = []
    for score in ev.for_pair(train, test):
        if score.column not in COLUMNS:
            continue
        if not score.fold_accuracy:
            notes.append(f"{score.column}: no scored predictions (see Missing models)")
        elif score.missing_folds:
            notes.append(f"{score.column}: mean over {len(score.fold_accuracy)} of "
                         f"{len(score.expected_folds)} folds; missing folds "
                         f"{', '.join(map(str, score.missing_folds))}")
    dropped = next((s.dropped_labels for s in ev.for_pair(train, test) if s.dropped_labels), None)
    if dropped:
        detail = ", ".join(f"{label} {n}" for label, n in dropped.items())
        notes.append(f"dropped {sum(dropped.values())} test samples whose class the model was not "
                     f"trained on ({detail})")
    return notes


def per_fold_markdown(ev: RunEvaluation, train: str, test: str) -> str:
    """Accuracy (%) per fold for each Table I column, then the mean and pooled rows."""
    scores = [ev.score(train, test, c) for c in COLUMNS]
    folds = sorted({f for s in scores if s for f in (*s.expected_folds, *s.fold_accuracy)})
    rows = [[str(fold)] + [pct(s.fold_accuracy.get(fold)) if s else "" for s in scores]
            for fold in folds]
    rows.append(["mean"] + [pct(s.mean_accuracy) if s else "" for s in scores])
    rows.append(["pooled"] + [pct(s.pooled_accuracy) if s else "" for s in scores])
    rows.append(["samples"] + [str(s.n_samples) if s else "" for s in scores])
    return markdown_table(["fold", *COLUMNS], rows)


def _member_scores(ev: RunEvaluation, train: str, test: str) -> list[tuple[str, list[SystemScore]]]:
    """Baseline/FTL ensembles with their members (EL members are the part columns already)."""
    out = []
    for network in ("baseline", "ftl"):
        pair = [s for s in ev.for_pair(train, test) if s.network == network]
        if pair:
            out.append((network, pair))
    return out


def members_frame(ev: RunEvaluation) -> pd.DataFrame:
    """Mean-over-folds accuracy (%) of each Baseline/FTL member and of its ensemble."""
    rows = []
    for train, test in ev.pairs:
        for network, scores in _member_scores(ev, train, test):
            for s in scores:
                rows.append([train, test, network, s.member or "ensemble",
                             _round_pct(None if math.isnan(s.mean_accuracy) else s.mean_accuracy)])
    return pd.DataFrame(rows, columns=["train_dataset", "test_dataset", "network", "member",
                                       "accuracy"])


def members_markdown(ev: RunEvaluation, train: str, test: str) -> str:
    groups = _member_scores(ev, train, test)
    if not groups:
        return ""
    names = sorted({s.member for _, scores in groups for s in scores if s.member})
    rows = []
    for network, scores in groups:
        by_member = {s.member: s for s in scores}
        rows.append([network] + [pct(by_member[m].mean_accuracy) if m in by_member else ""
                                 for m in names] + [pct(by_member[None].mean_accuracy)])
    return markdown_table(["network", *names, "ensemble"], rows)


def folds_frame(ev: RunEvaluation) -> pd.DataFrame:
    """Long table of every system's accuracy per fold (%), for re-analysis."""
    rows = [[s.train_dataset, s.eval_dataset, s.network, s.member or "ensemble", s.column, fold,
             round(100 * acc, 2)]
            for s in ev.scores for fold, acc in sorted(s.fold_accuracy.items())]
    return pd.DataFrame(rows, columns=["train_dataset", "test_dataset", "network", "member",
                                       "column", "fold", "accuracy"])


def missing_frame(ev: RunEvaluation) -> pd.DataFrame:
    rows = [[m.record.dataset, m.record.network, m.record.member, m.record.fold, m.record.stage,
             m.record.key, m.reason, m.path] for m in ev.results.missing]
    return pd.DataFrame(rows, columns=["dataset", "network", "member", "fold", "stage", "key",
                                       "reason", "path"])


def table2_markdown(ev: RunEvaluation) -> str:
    """Table II: our EL accuracy beside the paper's EL and the benchmark it cites."""
    rows = []
    for train, _ in ev.self_pairs:
        bench = TABLE2.get(train)
        el = ev.score(train, train, "EL")
        paper_el = TABLE1.get(train, {}).get("EL")
        rows.append([display_name(train), pct(el.mean_accuracy) if el else "",
                     f"{paper_el:.2f}" if paper_el is not None else "n/a",
                     f"{bench.accuracy:.2f} {bench.references}" if bench else "n/a",
                     f"{bench.params_millions:g}" if bench else "n/a", f"{EL_PARAMS_MILLIONS:g}"])
    return markdown_table(["data set", "EL ours (%)", "EL paper (%)", "benchmark (%)",
                           "benchmark params (M)", "EL params, paper (M)"], rows)


def _table1_markdown(ev: RunEvaluation) -> str:
    parts = ["# Table I: accuracy (%) of Baseline, FTL, each EL part alone, and EL\n"]
    warning = warning_line(ev.plan)
    if warning:
        parts.append(warning + "\n")
    parts.append("Accuracy is the mean of the per-fold accuracies (the paper's \"average "
                 "performance across the ten models\"); the pooled accuracy over all test "
                 "samples is in the per-fold tables. Ensembles sum the 5 members' softmax "
                 "vectors (Eq. 4).\n")
    for train, test in ev.self_pairs:
        parts.append(f"## {pair_title(train, test)}\n")
        if warning:
            parts.append(warning + "\n")
        parts.append(comparison_markdown(ev, train, test))
        parts.append(f"### Per fold: {display_name(train)}\n")
        parts.append(per_fold_markdown(ev, train, test))
        members = members_markdown(ev, train, test)
        if members:
            parts.append(f"### Baseline and FTL members alone: {display_name(train)} (%)\n")
            parts.append(members)
    return "\n".join(parts)


def _table3_markdown(ev: RunEvaluation) -> str:
    parts = ["# Table III: cross-data-set generalisation, accuracy (%)\n"]
    warning = warning_line(ev.plan)
    if warning:
        parts.append(warning + "\n")
    parts.append("Test samples whose class the trained data set lacks (e.g. contempt when SFEW "
                 "models are tested on CK+) are dropped and counted; classes are matched by name.\n")
    for train in sorted({t for t, _ in ev.cross_pairs}):
        pairs = [(train, train)] if (train, train) in ev.pairs else []
        for pair in pairs + [p for p in ev.cross_pairs if p[0] == train]:
            parts.append(f"## {pair_title(*pair)}\n")
            parts.append(comparison_markdown(ev, *pair))
            parts.append(f"### Per fold: {pair_title(*pair)}\n")
            parts.append(per_fold_markdown(ev, *pair))
    return "\n".join(parts)


def has_cross_dataset(ev: RunEvaluation) -> bool:
    return bool(ev.cross_pairs)


def write_tables(ev: RunEvaluation, run_dir: Path) -> dict[str, Path]:
    """Write every table under `<run_dir>/tables/`; returns name -> path of what was written."""
    out = Path(run_dir) / TABLES_DIR
    written = {
        "table1.csv": atomic.write_text(out / "table1.csv", _csv(table1_frame(ev))),
        "table1.md": atomic.write_text(out / "table1.md", _table1_markdown(ev)),
        "folds.csv": atomic.write_text(out / "folds.csv", _csv(folds_frame(ev))),
        "members.csv": atomic.write_text(out / "members.csv", _csv(members_frame(ev))),
        "missing.csv": atomic.write_text(out / "missing.csv", _csv(missing_frame(ev))),
    }
    if has_cross_dataset(ev):
        written["table3.csv"] = atomic.write_text(out / "table3.csv", _csv(table3_frame(ev)))
        written["table3.md"] = atomic.write_text(out / "table3.md", _table3_markdown(ev))
    return written
