"""`report.md` and `report.html` in the run directory: the whole paper beside ours, results first.

A line of contents, banners for shrunk, synthetic, partial or incomplete runs; Tables I-III (mean and sd over folds, macro-F1, per-class recall), with paired tests
and bootstrap intervals right after Table I; every network's confusion matrix (Figs. 7-9 and the cross-data-set
tests); the landmark before/after study (Fig. 10); Grad-CAM (Fig. 11); model complexity
(Section IV-E); training curves; then an appendix of settings, versions, timings, data sets and
completeness, led by the provenance (code, libraries, device, image-steps, GPU-hours). Every table, matrix and figure is rebuilt from plan.json and the files it points to,
written atomically, and linked relatively; the report carries no build timestamps, so
rebuilding an unchanged run gives identical files.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from datetime import datetime, timezone
from pathlib import Path

from partfer import atomicio
from partfer.orchestrator.run_files import CONFUSION_DIR, FIGURES_DIR, REPORT_FILE
from partfer.results.comparability import partial_note, shrink_reasons, synthetic_note, warning_line
from partfer.results.complexity import ComplexityInput, complexity_markdown, load_complexity
from partfer.results.confusion import file_stem, write_confusions
from partfer.results.evaluate import RunEvaluation, evaluate_run
from partfer.results.figures import Histories, load_histories, write_figures
from partfer.results.gradcam import write_gradcam_figures
from partfer.results.html import HTML_FILE, write_html
from partfer.results.landmark_figure import write_landmark_figures
from partfer.results.landmarks import (LandmarkStudy, load_landmark_study, study_markdown,
                               write_landmark_tables)
from partfer.results.load import NoPredictionsError, RunResults, load_run
from partfer.results.learning import NotLearned, flag_lines, not_learned
from partfer.results.selection import denominator_mismatches, selection_frame, selection_markdown, selection_sentence
from partfer.results.markdown import bullets, figure, heading_anchors, markdown_table
from partfer.results.paper import display_name
from partfer.results.provenance import duration, provenance_markdown
from partfer.results.significance import (Significance, method_text, significance,
                                          significance_markdown, write_significance)
from partfer.results.tables import (TABLES_DIR, class_scores_markdown, comparison_markdown, members_markdown, pair_labels,
                            pair_title, per_fold_markdown, table2_markdown, table3_pairs,
                            write_tables)

# Always shown (as "not recorded" when absent): what decides whether numbers can be compared.
CORE_SETTINGS = ("image_size", "epochs_scale", "seed", "device", "executor", "detector",
                 "annotator")
# Shown when the run recorded them.
MORE_SETTINGS = ("config_name", "status", "precision", "pack_size", "networks", "members",
                 "parts", "epochs")
TIMING_SETTINGS = ("started", "finished", "wall_seconds", "train_seconds", "train_images",
                   "trained_model_stages")
# Shown in their own sections, not among "other settings".
SECTIONED = {"versions", "shrunk_reasons", *TIMING_SETTINGS}
PROVENANCE_HEADING = "Provenance"      # the appendix's first part, linked from the contents


def _value(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text.replace("|", "\\|")


def _banners(ev: RunEvaluation) -> list[str]:
    """Block-quote paragraphs set above everything: what makes the numbers differ from the paper's."""
    lines = []
    plan = ev.plan
    synthetic = synthetic_note(plan)
    if synthetic:
        lines.append(f"> **SYNTHETIC DATA**: {synthetic}. These accuracies say nothing about real "
                     "faces.")
    partial = partial_note(plan)
    if partial:
        lines.append(f"> **PARTIAL RUN**: {partial}.")
    missing = ev.results.missing
    if missing:
        lines.append(f"> **INCOMPLETE RUN**: {len(missing)} of {len(plan.models)} planned models "
                     "have no usable predictions (see Completeness); every number is computed "
                     "from the rest and says which folds it lacks.")
    counts = denominator_mismatches(ev)
    if counts:
        lines.append("> **TEST SETS DIFFER FROM THE PAPER'S**: " + "; ".join(counts) + ".")
    reasons = shrink_reasons(plan)
    if reasons:
        lines.append("> **SHRUNK RUN: the numbers below are NOT comparable with the paper's.** "
                     "Reasons:\n>\n" + "\n".join(f"> - {r}" for r in reasons))
    return lines


def _settings_section(ev: RunEvaluation) -> str:
    settings = ev.plan.settings
    rows = [[key, _value(settings[key]) if key in settings else "not recorded"]
            for key in CORE_SETTINGS]
    rows += [[key, _value(settings[key])] for key in MORE_SETTINGS if key in settings]
    text = markdown_table(["setting", "value"], rows)
    others = sorted(k for k in settings
                    if k not in CORE_SETTINGS and k not in MORE_SETTINGS and k not in SECTIONED)
    if others:
        text += "\nOther settings:\n\n" + markdown_table(
            ["setting", "value"], [[k, _value(settings[k])] for k in others])
    return text


def _versions_section(ev: RunEvaluation) -> str:
    versions = ev.plan.settings.get("versions")
    if not isinstance(versions, dict) or not versions:
        return "The run recorded no package versions.\n"
    return markdown_table(["package", "version"],
                          [[k, _value(v) if v is not None else "not installed"]
                           for k, v in sorted(versions.items())])


def _when(stamp) -> str:
    if not isinstance(stamp, (int, float)):
        return _value(stamp)
    return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(seconds) -> str:
    return duration(seconds) if isinstance(seconds, (int, float)) else _value(seconds)


def _timings_section(ev: RunEvaluation) -> str:
    s = ev.plan.settings
    if not any(k in s for k in TIMING_SETTINGS):
        return "The run recorded no timings.\n"
    rows = [["started", _when(s["started"]) if "started" in s else "not recorded"],
            ["finished", _when(s["finished"]) if "finished" in s else "not finished"]]
    for key in ("wall_seconds", "train_seconds"):
        rows.append([key.replace("_", " "), _duration(s[key]) if key in s else "not recorded"])
    for key in ("train_images", "trained_model_stages"):
        if key in s:
            rows.append([key.replace("_", " "), _value(s[key])])
    images, seconds = s.get("train_images"), s.get("train_seconds")
    if isinstance(images, (int, float)) and isinstance(seconds, (int, float)) and seconds > 0:
        rows.append(["training throughput", f"{images / seconds:,.0f} images/s (summed over "
                                            "models)"])
    return markdown_table(["", "value"], rows)


def _datasets_section(ev: RunEvaluation) -> str:
    rows = []
    for name, info in sorted(ev.plan.datasets.items()):
        rows.append([f"{display_name(name)} (`{name}`)", info.protocol, str(len(info.folds)),
                     str(info.n_samples), ", ".join(info.classes),
                     ", ".join(info.eval_on) or "-", f"`{info.prepared}`"])
    return markdown_table(["data set", "protocol", "folds", "samples", "classes", "also tested on",
                           "prepared data"], rows)


def _missing_table(missing) -> str:
    grouped: dict[tuple, list[int]] = {}
    for m in missing:
        r = m.record
        grouped.setdefault((r.dataset, r.network, r.member, r.stage, m.reason), []).append(r.fold)
    rows = [[d, n, mem, st, ", ".join(map(str, sorted(folds))), reason]
            for (d, n, mem, st, reason), folds in sorted(grouped.items())]
    return markdown_table(["data set", "network", "member", "stage", "folds", "reason"], rows)


def _completeness_section(ev: RunEvaluation, histories: Histories) -> str:
    plan, missing = ev.plan, ev.results.missing
    parts = [f"{len(plan.models) - len(missing)} of {len(plan.models)} planned models have "
             "usable predictions.\n"]
    if missing:
        parts.append("**Missing models** (not used in any number; full list in "
                     "[tables/missing.csv](tables/missing.csv)):\n")
        parts.append(_missing_table(missing))
    if ev.results.missing_cross:
        parts.append("**Missing cross-data-set predictions** (those folds are left out of "
                     "Table III; full list in [tables/missing.csv](tables/missing.csv)):\n")
        parts.append(_missing_table(ev.results.missing_cross))
    unscored = [s for s in ev.scores if not s.fold_accuracy]
    if unscored:
        parts.append("Systems with no scored predictions: " + ", ".join(
            f"{s.column} ({pair_title(s.train_dataset, s.eval_dataset)})" for s in unscored) + ".\n")
    partial_folds = [s for s in ev.scores if s.fold_accuracy and s.missing_folds and s.is_ensemble]
    if partial_folds:
        parts.append("Ensembles computed over fewer folds than planned:\n")
        parts.append(bullets([
            f"{pair_title(s.train_dataset, s.eval_dataset)} {s.column}: missing fold(s) "
            f"{', '.join(map(str, s.missing_folds))} of {len(s.expected_folds)}"
            for s in partial_folds]))
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


def _table1_section(ev: RunEvaluation, flags: list[NotLearned]) -> list[str]:
    out = ["## Table I: accuracy (%), ours beside the paper's\n"]
    warning = warning_line(ev.plan)
    if warning:
        out.append(warning + "\n")
    out.append("Mean of the per-fold accuracies (the paper's number); ensembles sum the members' "
               "softmax vectors (Eq. 4).\n")
    out.append(selection_sentence(ev.results.selection) + "\n")
    for train, test in ev.self_pairs:
        out.append(f"### {pair_title(train, test)}\n")
        out.append(comparison_markdown(ev, train, test, flags))
        classes = class_scores_markdown(ev, train, test)
        if classes:
            out.append("Each network's ensemble (%): accuracy as mean ± sd over folds; macro-F1 and "
                       "each class's recall of the fold-summed confusion matrix:\n")
            out.append(classes)
        out.append("Per fold (%):\n")
        out.append(per_fold_markdown(ev, train, test))
        members = members_markdown(ev, train, test)
        if members:
            out.append("Baseline and FTL members alone (%, mean over folds):\n")
            out.append(members)
    return out


def _selection_section(ev: RunEvaluation, twin: RunEvaluation | None, twin_flags: list[NotLearned]) -> list[str]:
    if twin is None:
        return []
    out = ["## The authors' selection beside a no-peeking one\n", selection_markdown(ev, twin)]
    warnings = [line for train, _ in twin.self_pairs for line in flag_lines(twin_flags, train)]
    if warnings:
        out.append(f"Under `{twin.results.selection}`:\n")
        out.append(bullets(warnings))
    out.append(f"Files: {_links(['table1_selection.csv'], TABLES_DIR)}.\n")
    return out


def _table3_section(ev: RunEvaluation, flags: list[NotLearned]) -> list[str]:
    out = ["## Table III: cross-data-set generalisation\n"]
    if not ev.cross_pairs:
        out.append("No cross-data-set predictions in this run (no model was tested on another "
                   "data set), so Table III is skipped.\n")
        return out
    warning = warning_line(ev.plan)
    if warning:
        out.append(warning + "\n")
    out.append("Test samples of classes the trained data set lacks (contempt on CK+) are dropped "
               "and counted. Per-fold numbers: [tables/table3.md](tables/table3.md); "
               "csv with the paper's rows and the differences: "
               "[tables/table3.csv](tables/table3.csv).\n")
    for train, test in table3_pairs(ev):
        train_label, test_label = pair_labels(ev, train, test)
        out.append(f"### {train_label} -> {test_label} ({pair_title(train, test)})\n")
        out.append(comparison_markdown(ev, train, test, flags))
    return out


def _confusion_caption(score) -> str:
    tested = ("its test folds, summed" if not score.cross
              else f"{display_name(score.eval_dataset)}, trained on {display_name(score.train_dataset)}")
    return (f"{score.column} ensemble on {tested}: each row a true class, each column the "
            "predicted one; a cell's colour and % are its share of the true class, then its count.")


def _confusion_section(ev: RunEvaluation, confusions: dict) -> list[str]:
    out = ["## Confusion matrices (fold-summed, row-normalised; rows true, columns predicted)\n"]
    if not confusions:
        out.append("No confusion matrices: no system has scored predictions.\n")
        return out
    out.append("CK+ and JAFFE: the sum of the fold matrices (Figs. 7, 8); a hold-out set such as "
               "SFEW: its validation set (Fig. 9). Each cell: the share of its true class (colour "
               "and %) and the count. Every network's ensemble is shown; every system's counts and "
               "heat map (EL parts too) are linked below.\n")
    for score in ev.scores:
        stem = file_stem(score)
        if score.is_ensemble and stem in confusions:
            out.append(figure(f"confusion/{stem}.png", stem, _confusion_caption(score)))
    rows = [[stem, f"[csv](confusion/{stem}.csv)", f"[png](confusion/{stem}.png)"]
            for stem in sorted(confusions)]
    out.append(markdown_table(["system", "counts", "heat map"], rows))
    return out


def _figure_dataset(name: str) -> str:
    """The data set a figure file is of: "ckplus_gradcam.png" -> "CK+"."""
    return display_name(name.rsplit("_", 1)[0])


def _landmark_section(study: LandmarkStudy, tables: dict, figures: dict,
                      notes: list[str]) -> list[str]:
    out = ["## Landmarks before and after fine-tuning (Sections IV-B, V-B; Fig. 10)\n",
           study_markdown(study)]
    files = [n for n in ("landmarks.csv", "landmarks_models.csv", "landmarks.md") if n in tables]
    if files:
        out.append(f"Files: {_links(files, TABLES_DIR)}.\n")
    for name in sorted(n for n in figures if n.endswith("_landmarks.png")):
        out.append(figure(f"figures/{name}", name, (
            f"{_figure_dataset(name)}: EL's part networks' landmarks on a few test faces, before "
            "fine-tuning (top row) and after (bottom row), coloured by part; the true points "
            "small and grey.")))
    if notes:
        out.append(bullets(notes))
    return out


def _gradcam_section(figures: dict, notes: list[str]) -> list[str]:
    out = ["## Grad-CAM (Section V-C; Fig. 11)\n",
           "Each row one test face: the crop, then the Grad-CAM map of Baseline and FTL (the "
           "union, elementwise maximum, of their 5 members' maps) and of each EL part network; "
           "titles give the predicted class (green right, red wrong).\n"]
    names = sorted(n for n in figures if n.endswith("_gradcam.png"))
    for name in names:
        out.append(figure(f"figures/{name}", name, (
            f"{_figure_dataset(name)}: where each network looks. One test face a row: the crop, "
            "then the Grad-CAM heat map of Baseline, FTL and each EL part over it, titled with "
            "the predicted class (green right, red wrong).")))
    if notes:
        out.append(bullets(notes))
    return out


def _complexity_size_note(counted: int, trained) -> str | None:
    """Said when complexity.json was counted at another size than the run trained at (runs made
    before the runner counted at the run's own size)."""
    if not isinstance(trained, int) or counted == trained:
        return None
    return (f"**Counted at {counted}x{counted} inputs, but this run trained on {trained}x{trained} "
            "inputs** (its complexity file predates counting at the run's size): parameters and "
            "storage are the same at any input size, the FLOPs below are not this run's.\n")


def _complexity_section(ev: RunEvaluation, complexity: ComplexityInput,
                        tables: dict) -> list[str]:
    out = ["## Model complexity (Section IV-E)\n"]
    if complexity.report is None:
        out.append(f"No complexity figures: `analysis/{complexity.path.name}` is "
                   f"{complexity.problem}.\n")
        return out
    note = _complexity_size_note(int(complexity.report["image_size"]),
                                 ev.plan.settings.get("image_size"))
    if note:
        out.append(note)
    out.append(complexity_markdown(complexity.report))
    if "complexity.csv" in tables:
        out.append(f"Files: {_links(['complexity.csv', 'complexity.md'], TABLES_DIR)}.\n")
    return out


def _figure_caption(name: str, shrunk: bool) -> str:
    dataset = _figure_dataset(name)
    if name.endswith("_curves.png"):
        return (f"{dataset}: loss (left of each pair, linear axis) and accuracy (right) per epoch "
                "of every network and training stage, one colour per member; validation solid "
                "(median over folds, lowest to highest fold shaded), training dashed.")
    return (f"{dataset}: each Table I column's accuracy (mean over folds) beside the paper's"
            + (" (not comparable: shrunk or synthetic run)." if shrunk else "."))


def _figures_section(ev: RunEvaluation, figures: dict) -> list[str]:
    out = ["## Training curves and accuracy charts\n"]
    if not any(name.endswith("_curves.png") for name in figures):
        out.append("No training curves: no model left a usable history.csv.\n")
    shrunk = bool(shrink_reasons(ev.plan))
    for name in sorted(n for n in figures if n.endswith(("_curves.png", "_accuracy.png"))):
        out.append(figure(f"figures/{name}", name, _figure_caption(name, shrunk)))
    return out


def _significance_section(ev: RunEvaluation, sig: Significance | None) -> list[str]:
    if sig is None or not sig.intervals:
        return []
    out = ["## Significance: paired tests and bootstrap intervals\n", method_text()]
    for train, _ in ev.self_pairs:
        body = significance_markdown(sig, train)
        if body:
            out += [f"### {pair_title(train, train)}\n", body]
    out.append(f"Files (every pair of Table I columns): "
               f"{_links(['significance_wilcoxon.csv', 'significance_mcnemar.csv', 'bootstrap_intervals.csv'], TABLES_DIR)}.\n")
    return out


def _short_title(title: str) -> str:
    """A section's name without its gloss: "Grad-CAM (Section V-C; Fig. 11)" -> "Grad-CAM"."""
    return re.split(r":| \(", title, maxsplit=1)[0]


def _contents(body: str) -> str:
    """One line of links to every ## section of the body, and to the appendix's provenance
    (report.html gives the headings these ids); one line, so Table I stays on the first screen."""
    found = heading_anchors(body)
    items = [f"[{_short_title(title)}](#{anchor})" for level, title, anchor in found if level == 2]
    items += [f"[{title}](#{anchor})" for level, title, anchor in found
              if level == 3 and title == PROVENANCE_HEADING]
    return "**Contents**: " + " · ".join(items) + "\n" if items else ""


def _compose(ev: RunEvaluation, tables: dict, confusions: dict, figures: dict,
             histories: Histories, study: LandmarkStudy, landmark_notes: list[str],
             gradcam_notes: list[str], complexity: ComplexityInput, twin: RunEvaluation | None = None,
             flags: tuple[list[NotLearned], list[NotLearned]] = ([], []),
             sig: Significance | None = None) -> str:
    plan = ev.plan
    run_dir = ev.results.run_dir
    head = [f"# partfer run `{plan.run_id}`\n"]
    out = []
    banners = _banners(ev)
    if banners:
        out.append("\n>\n".join(banners) + "\n")
    out += _table1_section(ev, flags[0])
    out += _significance_section(ev, sig)
    out += _selection_section(ev, twin, flags[1])
    out.append("## Table II: EL against the benchmarks the paper cites\n")
    out.append(table2_markdown(ev, complexity))
    out += _table3_section(ev, flags[0])
    out += _confusion_section(ev, confusions)
    out += _landmark_section(study, tables, figures, landmark_notes)
    out += _gradcam_section(figures, gradcam_notes)
    out += _complexity_section(ev, complexity, tables)
    out += _figures_section(ev, figures)
    out += _appendix(ev, tables, histories, run_dir)
    body = "\n".join(out)
    contents = _contents(body)
    return "\n".join(head + ([contents] if contents else []) + [body])


def _appendix(ev: RunEvaluation, tables: dict, histories: Histories, run_dir: Path) -> list[str]:
    """What the run was and how it went: read after the results, not before."""
    out = ["## Appendix: settings, versions, timings, data sets, completeness\n",
           "Rebuilt from `plan.json` and the files it points to by `partfer report`."]
    config = (" Resolved configuration: [config.yaml](config.yaml)."
              if (run_dir / "config.yaml").is_file() else "")
    out.append(f"Tables: {_links(sorted(tables), TABLES_DIR)}.{config}\n")
    for heading, body in ((PROVENANCE_HEADING, provenance_markdown(ev.plan)),
                          ("Settings", _settings_section(ev)), ("Versions", _versions_section(ev)),
                          ("Timings", _timings_section(ev)), ("Data sets", _datasets_section(ev)),
                          ("Completeness", _completeness_section(ev, histories))):
        out += [f"### {heading}\n", body]
    return out


def build_report(run_dir: Path | str, embed_images: bool = False,
                 store: str | Path | None = None) -> Path:
    """Rebuild every table, matrix, figure, report.md and report.html of a run; returns report.md.

    Everything is built in a folder beside the run's files and swapped in only once complete, so a
    failed rebuild leaves the previous report as it was. A run whose planned models have no usable
    predictions at all raises NoPredictionsError and writes nothing.
    embed_images: report.html carries its images as base64 data URIs (one file to send around)
    instead of linking figures/ and confusion/ relatively. store: where the models live, when not
    where load.storage_root finds them.
    """
    results = load_run(run_dir, store=store)
    _check_has_predictions(results)
    build = atomicio.make_temp_dir(results.run_dir / REPORT_FILE)
    try:
        _build_into(results, build, embed_images, store)
        return _swap_in(build, results.run_dir)
    finally:
        shutil.rmtree(build, ignore_errors=True)


def _check_has_predictions(results: RunResults) -> None:
    if not results.predictions.empty or not results.plan.models:
        return
    first = results.missing[0] if results.missing else None
    example = f" (e.g. {first.path}: {first.reason})" if first else ""
    raise NoPredictionsError(
        f"{results.run_dir}: none of the {len(results.plan.models)} planned models has usable "
        f"predictions under the store {results.storage_root}{example}; name the store holding the "
        "models with --store. The existing report was left untouched.")


def _build_into(results: RunResults, out: Path, embed_images: bool, store) -> None:
    """Every output of the report under `out` (laid out as in the run directory)."""
    run_dir = results.run_dir
    ev = evaluate_run(results)
    twin, twin_flags = None, []
    others = [s for s in results.selections if s != results.selection]
    if others:
        twin_results = load_run(run_dir, others[0], store=store)
        twin = evaluate_run(twin_results)
        twin_flags = not_learned(twin_results, load_landmark_study(twin_results))
    histories = load_histories(results)
    complexity = load_complexity(run_dir)
    study = load_landmark_study(results)
    flags = not_learned(results, study)
    tables = write_tables(ev, out, complexity, flags)
    tables.update(write_landmark_tables(study, out / TABLES_DIR, ev.plan))
    confusions = write_confusions(ev, out)
    sig = significance(ev)
    tables.update(write_significance(sig, out))
    figures = write_figures(ev, out, histories)
    landmark_figures, landmark_notes = write_landmark_figures(study, results, out)
    gradcam_figures, gradcam_notes = write_gradcam_figures(
        run_dir, [train for train, _ in ev.self_pairs], out)
    figures.update(landmark_figures)
    figures.update(gradcam_figures)
    if twin is not None:
        tables["table1_selection.csv"] = atomicio.write_text(
            out / TABLES_DIR / "table1_selection.csv",
            selection_frame(ev, twin).to_csv(index=False, float_format="%.2f", lineterminator="\n"))
    text = _compose(ev, tables, confusions, figures, histories, study, landmark_notes,
                    gradcam_notes, complexity, twin, (flags, twin_flags), sig)
    atomicio.write_text(out / REPORT_FILE, text)
    write_html(text, f"partfer run {ev.plan.run_id}", out, embed=embed_images)


def _swap_in(build: Path, run_dir: Path) -> Path:
    """Each rebuilt folder replaces its old one whole, then report.html, and report.md last: a
    reader sees the old report or the new one."""
    for folder in (TABLES_DIR, CONFUSION_DIR, FIGURES_DIR):
        if (build / folder).is_dir():
            atomicio.replace_dir(build / folder, run_dir / folder)
    for name in (HTML_FILE, REPORT_FILE):
        os.replace(build / name, run_dir / name)
    return run_dir / REPORT_FILE
