"""Tables I, II and III (III when the run tested across data sets) as CSV and Markdown.

CSV cells are accuracies in % with 2 decimals (the paper's precision), empty where a system
has no scored predictions. The Markdown sets each row beside the paper's and states every
fold or model that is missing, so an incomplete number is never mistaken for a full one.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from partfer import atomicio
from partfer.orchestrator.networks import NETWORKS
from partfer.orchestrator.run_files import TABLES_DIR
from partfer.results.comparability import warning_line
from partfer.results.complexity import ComplexityInput, write_complexity
from partfer.results.evaluate import RunEvaluation, SystemScore
from partfer.results.learning import NotLearned, flag_lines
from partfer.results.markdown import markdown_table, pct  # noqa: F401  (pct: also imported from here)
from partfer.results.paper import (COLUMNS, EL_PARAMS_MILLIONS, TABLE1, TABLE2, TABLE3, TEST_IMAGES, display_name,
                           split_name)
from partfer.results.selection import denominator_line, scored_images, selection_sentence


def _accuracy_cells(ev: RunEvaluation, train: str, test: str) -> list[float | None]:
    """Mean-over-folds accuracy (fraction) of each Table I column for one pair."""
    cells = []
    for column in COLUMNS:
        score = ev.score(train, test, column)
        cells.append(None if score is None or math.isnan(score.mean_accuracy) else score.mean_accuracy)
    return cells


def _round_pct(value: float | None) -> float:
    return float("nan") if value is None else round(100 * value, 2)


def table1_frame(ev: RunEvaluation, flags: list[NotLearned] = ()) -> pd.DataFrame:
    """One row per trained data set tested on itself: the Table I columns, the selection the
    models were kept by, the test images scored beside the paper's count, and the networks that
    did not learn (results.learning; `;`-separated)."""
    rows = [[train] + [_round_pct(v) for v in _accuracy_cells(ev, train, test)]
            + [ev.results.selection, scored_images(ev, train, test), TEST_IMAGES.get((train, test)),
               ";".join(f.column for f in flags if f.dataset == train)]
            for train, test in ev.self_pairs]
    return pd.DataFrame(rows, columns=["dataset", *COLUMNS, "selection", "test_images", "paper_test_images",
                                       "not_learned"])


def table3_pairs(ev: RunEvaluation) -> list[tuple[str, str]]:
    """Table III's rows: each data set tested elsewhere, its own test row first."""
    pairs = []
    for train in sorted({t for t, _ in ev.cross_pairs}):
        pairs += [(train, train)] if (train, train) in ev.pairs else []
        pairs += [p for p in ev.cross_pairs if p[0] == train]
    return pairs


def _dropped(ev: RunEvaluation, train: str, test: str) -> dict[str, int]:
    return next((s.dropped_labels for s in ev.for_pair(train, test) if s.dropped_labels), {})


def pair_labels(ev: RunEvaluation, train: str, test: str) -> tuple[str, str]:
    """The paper's row labels ("SFEW Train", "SFEW Valid", "CK+")."""
    protocol = lambda name: (ev.plan.datasets[name].protocol  # noqa: E731
                             if name in ev.plan.datasets else "")
    return (split_name(train, protocol(train), "train"),
            split_name(test, protocol(test), "test" if train == test else "other"))


TABLE3_COLUMNS = ["train_dataset", "test_dataset", "train", "test", "source", *COLUMNS,
                  "n_dropped", "dropped"]


def table3_frame(ev: RunEvaluation) -> pd.DataFrame:
    """Table III: per pair our row, the paper's row and the difference (percentage points).

    Test samples of classes the model was not trained on (contempt on CK+) are dropped; the
    `ours` row counts them (n_dropped) and names them (dropped).
    """
    rows = []
    for train, test in table3_pairs(ev):
        labels = list(pair_labels(ev, train, test))
        ours = [_round_pct(v) for v in _accuracy_cells(ev, train, test)]
        dropped = _dropped(ev, train, test)
        detail = ", ".join(f"{label} {n}" for label, n in dropped.items())
        rows.append([train, test, *labels, "ours", *ours, sum(dropped.values()), detail])
        paper = _paper_row(train, test)
        if paper is not None:
            rows.append([train, test, *labels, "paper", *[paper[c] for c in COLUMNS], "", ""])
            rows.append([train, test, *labels, "difference",
                         *[round(o - paper[c], 2) for o, c in zip(ours, COLUMNS)], "", ""])
    return pd.DataFrame(rows, columns=TABLE3_COLUMNS)


def _csv(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, float_format="%.2f", lineterminator="\n")


def pair_title(train: str, test: str) -> str:
    if train == test:
        return f"{display_name(train)} (`{train}`)"
    return f"{display_name(train)} -> {display_name(test)} (`{train}` tested on `{test}`)"


def _paper_row(train: str, test: str) -> dict[str, float] | None:
    return TABLE1.get(train) if train == test else TABLE3.get((train, test))


def comparison_markdown(ev: RunEvaluation, train: str, test: str, flags: list[NotLearned] = ()) -> str:
    """Our row, the paper's row and the difference (percentage points) for one pair; a network
    that did not learn (results.learning) is marked ⚠ and explained in one line."""
    ours = _accuracy_cells(ev, train, test)
    paper = _paper_row(train, test)
    flagged = {f.column for f in flags if f.dataset == train}
    rows = [["ours (mean over folds)"] + [pct(v) + (" ⚠" if c in flagged else "") for v, c in zip(ours, COLUMNS)]]
    spread = [ev.score(train, test, c) for c in COLUMNS]
    if any(s is not None and not math.isnan(s.sd_accuracy) for s in spread):
        rows.append(["± sd over folds"] + ["" if s is None or math.isnan(s.sd_accuracy)
                                           else f"±{100 * s.sd_accuracy:.2f}" for s in spread])
    if paper is None:
        rows.append(["paper"] + ["n/a"] * len(COLUMNS))
    else:
        rows.append(["paper"] + [f"{paper[c]:.2f}" for c in COLUMNS])
        rows.append(["difference"] + [
            "" if v is None else f"{100 * v - paper[c]:+.2f}" for v, c in zip(ours, COLUMNS)])
    text = markdown_table(["", *COLUMNS], rows) + "\n" + denominator_line(ev, train, test) + "\n"
    warnings = flag_lines(flags, train)
    if warnings:
        text += "\n" + "\n".join(f"- {w}" for w in warnings) + "\n"
    notes = pair_notes(ev, train, test)
    if notes:
        text += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return text


def class_scores_markdown(ev: RunEvaluation, train: str, test: str) -> str:
    """Each network's ensemble: accuracy mean ± sd over folds, macro-F1 and every class's recall
    (both of the fold-summed matrix), in %; empty when no ensemble has predictions."""
    scores = [s for s in ev.for_pair(train, test) if s.is_ensemble and s.fold_accuracy]
    if not scores:
        return ""
    classes = scores[0].classes
    rows = []
    for s in scores:
        spread = "" if math.isnan(s.sd_accuracy) else f" ± {100 * s.sd_accuracy:.2f}"
        rows.append([s.column, pct(s.mean_accuracy) + spread, pct(s.macro_f1)]
                    + [pct(s.recall.get(c)) for c in classes])
    return markdown_table(["network", "accuracy (mean ± sd)", "macro-F1", *(f"recall {c}" for c in classes)],
                          rows)


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
    for network in (name for name, spec in NETWORKS.items() if not spec.by_part):
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
    """Every unusable predictions file: own (the model's test fold) or cross-data-set."""
    rows = [[m.record.dataset, m.record.network, m.record.member, m.record.fold, m.record.stage,
             m.record.key, "cross" if m.cross else "own", m.reason, m.path]
            for m in [*ev.results.missing, *ev.results.missing_cross]]
    return pd.DataFrame(rows, columns=["dataset", "network", "member", "fold", "stage", "key",
                                       "predictions", "reason", "path"])


TABLE2_COLUMNS = ["dataset", "el_ours", "el_paper", "el_difference", "el_folds",
                  "benchmark", "benchmark_references", "el_ours_minus_benchmark",
                  "el_params_ours", "el_params_ours_millions", "el_params_paper_millions",
                  "benchmark_params_millions"]


def table2_frame(ev: RunEvaluation, complexity: ComplexityInput | None) -> pd.DataFrame:
    """Table II: our EL accuracy and parameter count beside the paper's EL and its benchmark (CB).

    Our parameter count is that of a 5-member ensemble with this data set's number of classes,
    from the run's analysis/complexity.json; empty when the run did not record it.
    """
    rows = []
    for train, _ in ev.self_pairs:
        el = ev.score(train, train, "EL")
        ours = None if el is None or math.isnan(el.mean_accuracy) else _round_pct(el.mean_accuracy)
        paper_el = TABLE1.get(train, {}).get("EL")
        bench = TABLE2.get(train)
        n_classes = len(ev.plan.datasets[train].classes)
        params = complexity.ensemble_params(n_classes) if complexity is not None else None
        folds = f"{len(el.fold_accuracy)}/{len(el.expected_folds)}" if el else ""
        rows.append([
            train, ours, paper_el,
            None if ours is None or paper_el is None else round(ours - paper_el, 2), folds,
            bench.accuracy if bench else None, bench.references if bench else "",
            None if ours is None or bench is None else round(ours - bench.accuracy, 2),
            params, None if params is None else round(params / 1e6, 3),
            EL_PARAMS_MILLIONS, bench.params_millions if bench else None])
    return pd.DataFrame(rows, columns=TABLE2_COLUMNS)


def _num(value, fmt: str = ".2f", signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return format(value, ("+" if signed else "") + fmt)


def table2_markdown(ev: RunEvaluation, complexity: ComplexityInput | None = None) -> str:
    """Table II beside the paper: EL accuracy (%) and parameters (M) against the benchmark (CB)."""
    frame = table2_frame(ev, complexity)
    rows = []
    for r in frame.itertuples(index=False):
        rows.append([
            display_name(r.dataset), _num(r.el_ours), _num(r.el_paper, ".2f") or "n/a",
            _num(r.el_difference, ".2f", True), r.el_folds,
            f"{r.benchmark:.2f} {r.benchmark_references}" if r.benchmark is not None else "n/a",
            _num(r.el_ours_minus_benchmark, ".2f", True),
            _num(r.el_params_ours_millions, ".3f"),
            f"{r.el_params_paper_millions:g}",
            f"{r.benchmark_params_millions:g}" if r.benchmark_params_millions is not None else "n/a"])
    text = markdown_table(["data set", "EL ours (%)", "EL paper (%)", "ours - paper", "folds",
                           "CB (%)", "ours - CB", "EL params ours (M)", "EL params paper (M)",
                           "CB params (M)"], rows)
    if complexity is None or complexity.report is None:
        why = "not recorded" if complexity is None else complexity.problem
        where = "" if complexity is None else f" (`{complexity.path.name}`: {why})"
        text += f"\nOur parameter counts are empty: the run left no usable complexity report{where}.\n"
    else:
        lacking = [f"{display_name(r.dataset)} ({len(ev.plan.datasets[r.dataset].classes)} "
                   "classes)" for r in frame.itertuples(index=False) if r.el_params_ours is None]
        if lacking:
            text += (f"\n`{complexity.path.name}` has no counts for the class numbers of "
                     f"{', '.join(lacking)}, so their parameter cells are empty.\n")
    return text


def _table2_file(ev: RunEvaluation, complexity: ComplexityInput | None) -> str:
    parts = ["# Table II: EL against the current benchmark (CB) the paper cites\n"]
    warning = warning_line(ev.plan)
    if warning:
        parts.append(warning + "\n")
    parts.append("Accuracy is the mean over folds (%), rounded to 2 decimals as the paper does; "
                 "parameters of the 5-member EL ensemble with the data set's number of classes "
                 "(BN running statistics included, as Keras counts them). Benchmarks: the paper's "
                 "Table II.\n")
    parts.append(table2_markdown(ev, complexity))
    return "\n".join(parts)


def _table1_markdown(ev: RunEvaluation, flags: list[NotLearned] = ()) -> str:
    parts = ["# Table I: accuracy (%) of Baseline, FTL, each EL part alone, and EL\n"]
    warning = warning_line(ev.plan)
    if warning:
        parts.append(warning + "\n")
    parts.append("Accuracy is the mean of the per-fold accuracies (the paper's \"average "
                 "performance across the ten models\"); the pooled accuracy over all test "
                 "samples is in the per-fold tables. Ensembles sum the 5 members' softmax "
                 "vectors (Eq. 4).\n")
    parts.append(selection_sentence(ev.results.selection) + "\n")
    for train, test in ev.self_pairs:
        parts.append(f"## {pair_title(train, test)}\n")
        if warning:
            parts.append(warning + "\n")
        parts.append(comparison_markdown(ev, train, test, flags))
        parts.append(f"### Per fold: {display_name(train)}\n")
        parts.append(per_fold_markdown(ev, train, test))
        members = members_markdown(ev, train, test)
        if members:
            parts.append(f"### Baseline and FTL members alone: {display_name(train)} (%)\n")
            parts.append(members)
    return "\n".join(parts)


def _table3_markdown(ev: RunEvaluation, flags: list[NotLearned] = ()) -> str:
    parts = ["# Table III: cross-data-set generalisation, accuracy (%)\n"]
    warning = warning_line(ev.plan)
    if warning:
        parts.append(warning + "\n")
    parts.append("Test samples whose class the trained data set lacks (e.g. contempt when SFEW "
                 "models are tested on CK+) are dropped and counted; classes are matched by name.\n")
    for pair in table3_pairs(ev):
        train_label, test_label = pair_labels(ev, *pair)
        parts.append(f"## {train_label} -> {test_label} ({pair_title(*pair)})\n")
        parts.append(comparison_markdown(ev, *pair, flags))
        parts.append(f"### Per fold: {pair_title(*pair)}\n")
        parts.append(per_fold_markdown(ev, *pair))
    return "\n".join(parts)


def has_cross_dataset(ev: RunEvaluation) -> bool:
    return bool(ev.cross_pairs)


def write_tables(ev: RunEvaluation, run_dir: Path, complexity: ComplexityInput | None = None,
                 flags: list[NotLearned] = ()) -> dict[str, Path]:
    """Write every table under `<run_dir>/tables/`; returns name -> path of what was written.
    flags: the networks that did not learn (results.learning), marked in Tables I and III."""
    out = Path(run_dir) / TABLES_DIR
    written = {
        "table1.csv": atomicio.write_text(out / "table1.csv", _csv(table1_frame(ev, flags))),
        "table1.md": atomicio.write_text(out / "table1.md", _table1_markdown(ev, flags)),
        "table2.csv": atomicio.write_text(out / "table2.csv", _csv(table2_frame(ev, complexity))),
        "table2.md": atomicio.write_text(out / "table2.md", _table2_file(ev, complexity)),
        "folds.csv": atomicio.write_text(out / "folds.csv", _csv(folds_frame(ev))),
        "members.csv": atomicio.write_text(out / "members.csv", _csv(members_frame(ev))),
        "missing.csv": atomicio.write_text(out / "missing.csv", _csv(missing_frame(ev))),
    }
    if has_cross_dataset(ev):
        written["table3.csv"] = atomicio.write_text(out / "table3.csv", _csv(table3_frame(ev)))
        written["table3.md"] = atomicio.write_text(out / "table3.md", _table3_markdown(ev, flags))
    if complexity is not None:
        written.update(write_complexity(complexity, out))
    return written
