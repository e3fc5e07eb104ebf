"""`report.md` in the run directory: settings, banners, Table I beside the paper, per-fold
numbers, missing models, and relative links to every table, confusion matrix and figure.

Everything is rebuilt from plan.json and the predictions alone, and written atomically; the
report carries no timestamps, so rebuilding an unchanged run gives identical files.
"""
from __future__ import annotations

import json
from pathlib import Path

from results import atomic
from results.comparability import shrink_reasons, synthetic_note, warning_line
from results.confusion import file_stem, write_confusions
from results.evaluate import RunEvaluation, evaluate_run
from results.figures import Histories, load_histories, write_figures
from results.load import load_run
from results.paper import display_name
from results.tables import (comparison_markdown, markdown_table, members_markdown, pair_title,
                            per_fold_markdown, table2_markdown, write_tables)

REPORT_FILE = "report.md"
KEY_SETTINGS = ("image_size", "epochs", "epochs_scale", "seed", "device", "executor",
                "detector", "annotator")


def _value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|")


def _banners(ev: RunEvaluation) -> list[str]:
    lines = []
    reasons = shrink_reasons(ev.plan)
    synthetic = synthetic_note(ev.plan)
    if synthetic:
        lines.append(f"> **SYNTHETIC DATA**: {synthetic}. These accuracies say nothing about real "
                     "faces.")
    if reasons:
        lines.append("> **SHRUNK RUN: the numbers below are NOT comparable with the paper's.** "
                     "Reasons: " + "; ".join(reasons) + ".")
    return lines


def _settings_section(ev: RunEvaluation) -> str:
    settings = ev.plan.settings
    rows = [[key, _value(settings[key]) if key in settings else "not recorded"]
            for key in KEY_SETTINGS]
    text = markdown_table(["setting", "value"], rows)
    others = sorted(k for k in settings if k not in KEY_SETTINGS)
    if others:
        text += "\nOther settings:\n\n" + markdown_table(
            ["setting", "value"], [[k, _value(settings[k])] for k in others])
    return text


def _datasets_section(ev: RunEvaluation) -> str:
    rows = []
    for name, info in sorted(ev.plan.datasets.items()):
        rows.append([f"{display_name(name)} (`{name}`)", info.protocol, str(len(info.folds)),
                     str(info.n_samples), ", ".join(info.classes),
                     ", ".join(info.eval_on) or "-", f"`{info.prepared}`"])
    return markdown_table(["data set", "protocol", "folds", "samples", "classes", "also tested on",
                           "prepared data"], rows)


def _completeness_section(ev: RunEvaluation, histories: Histories) -> str:
    plan, missing = ev.plan, ev.results.missing
    parts = [f"{len(plan.models) - len(missing)} of {len(plan.models)} planned models have "
             "usable predictions.\n"]
    if missing:
        grouped: dict[tuple, list[int]] = {}
        for m in missing:
            r = m.record
            grouped.setdefault((r.dataset, r.network, r.member, r.stage, m.reason), []).append(r.fold)
        rows = [[d, n, mem, st, ", ".join(map(str, sorted(folds))), reason]
                for (d, n, mem, st, reason), folds in sorted(grouped.items())]
        parts.append("**Missing models** (not used in any number; full list in "
                     "[tables/missing.csv](tables/missing.csv)):\n")
        parts.append(markdown_table(["data set", "network", "member", "stage", "folds", "reason"],
                                    rows))
    unscored = [s for s in ev.scores if not s.fold_accuracy]
    if unscored:
        parts.append("Systems with no scored predictions: " + ", ".join(
            f"{s.column} ({pair_title(s.train_dataset, s.eval_dataset)})" for s in unscored) + ".\n")
    if len(ev.gaps):
        rows = [[g.dataset, g.network, str(g.fold), g.eval_dataset, g.missing_members,
                 str(g.n_dropped), str(g.n_ensembled)] for g in ev.gaps.itertuples(index=False)]
        parts.append("**Ensemble gaps**: samples not ensembled because some members have no "
                     "prediction for them (an ensemble of fewer members is a different model):\n")
        parts.append(markdown_table(["data set", "network", "fold", "tested on", "missing members",
                                     "samples dropped", "samples ensembled"], rows))
    if histories.absent or histories.rejected:
        parts.append(f"Training histories: {histories.absent} models have no history.csv.\n")
        parts += [f"- rejected {line}\n" for line in histories.rejected]
    return "\n".join(parts)


def _links(names: list[str], folder: str) -> str:
    return ", ".join(f"[{name}]({folder}/{name})" for name in names)


def _compose(ev: RunEvaluation, tables: dict, confusions: dict, figures: dict,
             histories: Histories) -> str:
    plan = ev.plan
    run_dir = ev.results.run_dir
    out = [f"# partfer run `{plan.run_id}`\n"]
    banners = _banners(ev)
    if banners:
        out.append("\n>\n".join(banners) + "\n")
    out.append("Rebuilt from `plan.json` and the models' predictions by `partfer report`.")
    config = " Resolved configuration: [config.yaml](config.yaml)." if (run_dir / "config.yaml").is_file() else ""
    out.append(f"Tables: {_links(sorted(tables), 'tables')}.{config}\n")
    out.append("## Settings\n")
    out.append(_settings_section(ev))
    out.append("## Data sets\n")
    out.append(_datasets_section(ev))
    out.append("## Completeness\n")
    out.append(_completeness_section(ev, histories))
    out.append("## Table I: accuracy (%), ours beside the paper's\n")
    warning = warning_line(plan)
    if warning:
        out.append(warning + "\n")
    out.append("Mean of the per-fold accuracies (the paper's number); ensembles sum the members' "
               "softmax vectors (Eq. 4).\n")
    for train, test in ev.self_pairs:
        out.append(f"### {pair_title(train, test)}\n")
        out.append(comparison_markdown(ev, train, test))
        out.append("Per fold (%):\n")
        out.append(per_fold_markdown(ev, train, test))
        members = members_markdown(ev, train, test)
        if members:
            out.append("Baseline and FTL members alone (%, mean over folds):\n")
            out.append(members)
    out.append("## Table II: EL against the benchmarks the paper cites\n")
    out.append(table2_markdown(ev))
    out.append("## Table III: cross-data-set generalisation\n")
    if ev.cross_pairs:
        out.append("Details and per-fold numbers: [tables/table3.md](tables/table3.md).\n")
        for train, test in ev.cross_pairs:
            out.append(f"### {pair_title(train, test)}\n")
            out.append(comparison_markdown(ev, train, test))
    else:
        out.append("No cross-data-set predictions in this run (no model was tested on another "
                   "data set), so Table III is skipped.\n")
    out.append("## Confusion matrices (fold-summed; rows true, columns predicted)\n")
    if confusions:
        rows = [[stem, f"[csv](confusion/{stem}.csv)", f"[png](confusion/{stem}.png)"]
                for stem in sorted(confusions)]
        out.append(markdown_table(["system", "counts", "heat map"], rows))
        # The paper's Figs. 7-9: each ensemble on its own data set, shown inline.
        for score in ev.scores:
            stem = file_stem(score)
            if score.is_ensemble and not score.cross and stem in confusions:
                out.append(f"![{stem}](confusion/{stem}.png)\n")
    else:
        out.append("No confusion matrices: no system has scored predictions.\n")
    out.append("## Figures\n")
    if not any(name.endswith("_curves.png") for name in figures):
        out.append("No training curves: no model left a usable history.csv.\n")
    for name in sorted(figures):
        out.append(f"![{name}](figures/{name})\n")
    return "\n".join(out)


def build_report(run_dir: Path | str) -> Path:
    """Rebuild every table, confusion matrix, figure and report.md of a run; returns the report."""
    results = load_run(run_dir)
    ev = evaluate_run(results)
    histories = load_histories(results)
    tables = write_tables(ev, results.run_dir)
    confusions = write_confusions(ev, results.run_dir)
    figures = write_figures(ev, results.run_dir, histories)
    text = _compose(ev, tables, confusions, figures, histories)
    return atomic.write_text(results.run_dir / REPORT_FILE, text)
