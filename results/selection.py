"""What the authors' checkpoint choice buys: Table I under the run's main selection beside its
no-peeking twin, and how many test images each number is computed over.

The authors kept each stage's epoch of lowest loss on the fold being tested (train.selection
evaluated_fold): that choice sees the test images. A run with train.twin_selection trains every
model again under an honest selection (the last epoch, or held-out training subjects); both sets
of models are scored alike, and the difference is what the choice on the test fold adds.
"""
from __future__ import annotations

import math

import pandas as pd

from partfer.results.evaluate import RunEvaluation
from partfer.results.markdown import markdown_table, pct
from partfer.results.paper import COLUMNS, TABLE1, TABLE3, TEST_IMAGES, display_name

SELECTION_WORDS = {
    "evaluated_fold": "each stage kept its epoch of lowest loss on the fold being tested (the authors' "
                      "checkpoint choice: it sees the test images, so these accuracies are optimistic)",
    "heldout_subjects": "each stage kept its epoch of lowest loss on training subjects held out by "
                        "subject (no test image is seen)",
    "last": "each stage kept its final epoch (no test image is seen)",
}


def selection_sentence(selection: str) -> str:
    return f"Model selection `{selection}`: {SELECTION_WORDS.get(selection, 'as recorded in plan.json')}."


def scored_images(ev: RunEvaluation, train: str, test: str) -> int | None:
    """Test images the ensembles of a pair are scored on (the largest count among them)."""
    counts = [s.n_samples for s in ev.for_pair(train, test) if s.is_ensemble and s.fold_accuracy]
    return max(counts) if counts else None


def protocol_images(ev: RunEvaluation, train: str, test: str) -> int | None:
    """Test images the protocol holds: every fold's test rows (own data set), or the other data
    set's rows less those of classes the model was not trained on."""
    if train == test:
        rows = ev.plan.datasets[train].test_rows
        return rows or None
    if test not in ev.plan.datasets:
        return None
    dropped = next((sum(s.dropped_labels.values()) for s in ev.for_pair(train, test) if s.dropped_labels), 0)
    return ev.plan.datasets[test].n_samples - dropped


def denominator_line(ev: RunEvaluation, train: str, test: str) -> str:
    scored, protocol = scored_images(ev, train, test), protocol_images(ev, train, test)
    paper = TEST_IMAGES.get((train, test))
    parts = [f"Test images scored: {scored if scored is not None else 0:,}"]
    if protocol is not None:
        parts.append(f"of {protocol:,} in the protocol")
    parts.append(f"(paper: {paper:,})" if paper else "(paper: not stated)")
    return " ".join(parts) + "."


def denominator_mismatches(ev: RunEvaluation) -> list[str]:
    """Pairs of real data whose scored test images differ from the paper's count."""
    flag = ev.plan.settings.get("synthetic")
    if flag is True:
        return []
    synthetic = set(flag or []) if not isinstance(flag, str) else {flag}
    out = []
    for train, test in ev.pairs:
        paper = TEST_IMAGES.get((train, test))
        if paper is None or {train, test} & synthetic:
            continue
        scored = scored_images(ev, train, test)
        if scored != paper:
            name = display_name(train) if train == test else f"{display_name(train)} -> {display_name(test)}"
            out.append(f"{name}: {scored or 0:,} test images scored, the paper's {paper:,}")
    return out


def _paper(train: str, test: str) -> dict[str, float] | None:
    return TABLE1.get(train) if train == test else TABLE3.get((train, test))


def _cells(ev: RunEvaluation, train: str, test: str) -> list[float | None]:
    cells = []
    for column in COLUMNS:
        score = ev.score(train, test, column)
        ok = score is not None and not math.isnan(score.mean_accuracy)
        cells.append(score.mean_accuracy if ok else None)
    return cells


def selection_frame(main: RunEvaluation, twin: RunEvaluation) -> pd.DataFrame:
    """Per pair: the paper's row, each selection's row and their difference (percentage points)."""
    rows = []
    for train, test in main.pairs:
        a, b = _cells(main, train, test), _cells(twin, train, test)
        paper = _paper(train, test)
        if paper:
            rows.append([train, test, "paper", *[paper[c] for c in COLUMNS]])
        rows.append([train, test, main.results.selection, *[_r(v) for v in a]])
        rows.append([train, test, twin.results.selection, *[_r(v) for v in b]])
        rows.append([train, test, "difference", *[_r(x - y if None not in (x, y) else None) for x, y in zip(a, b)]])
    return pd.DataFrame(rows, columns=["train_dataset", "test_dataset", "row", *COLUMNS])


def _r(value: float | None) -> float:
    return float("nan") if value is None else round(100 * value, 2)


def selection_markdown(main: RunEvaluation, twin: RunEvaluation) -> str:
    """The report's side-by-side section body."""
    out = [selection_sentence(main.results.selection), selection_sentence(twin.results.selection),
           f"The difference row is {main.results.selection} minus {twin.results.selection}, in "
           "percentage points: what the checkpoint choice adds to the published kind of number.\n"]
    for train, test in main.pairs:
        title = display_name(train) if train == test else f"{display_name(train)} -> {display_name(test)}"
        a, b = _cells(main, train, test), _cells(twin, train, test)
        rows = []
        paper = _paper(train, test)
        if paper:
            rows.append(["paper"] + [f"{paper[c]:.2f}" for c in COLUMNS])
        rows.append([f"ours, {main.results.selection}"] + [pct(v) for v in a])
        rows.append([f"ours, {twin.results.selection}"] + [pct(v) for v in b])
        rows.append(["difference"] + ["" if None in (x, y) else f"{100 * (x - y):+.2f}" for x, y in zip(a, b)])
        out.append(f"### {title}\n")
        out.append(markdown_table(["", *COLUMNS], rows))
    return "\n".join(out)


__all__ = ["denominator_line", "denominator_mismatches", "protocol_images", "scored_images",
           "selection_frame", "selection_markdown", "selection_sentence"]
