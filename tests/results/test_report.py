"""report.md and report.html: every section of the paper beside ours, banners, missing folds
stated, and every link and image resolving."""
import re

import numpy as np
import pytest

from partfer.results.report import build_report
from run_builder import PAPER_SETTINGS, model_key

MD_LINK = re.compile(r"\]\(([^)]+)\)")
HTML_REF = re.compile(r'(?:href|src)="([^"]+)"')
SECTIONS = ["Settings", "Versions", "Timings", "Data sets", "Completeness",
            "Table I: accuracy (%), ours beside the paper's",
            "Table II: EL against the benchmarks the paper cites",
            "Table III: cross-data-set generalisation",
            "Confusion matrices (fold-summed, row-normalised; rows true, columns predicted)",
            "Landmarks before and after fine-tuning (Sections IV-B, V-B; Fig. 10)",
            "Grad-CAM (Section V-C; Fig. 11)", "Model complexity (Section IV-E)",
            "Training curves and accuracy charts"]


@pytest.fixture(scope="module")
def report(shrunk_run):
    return build_report(shrunk_run)


def test_report_md_links_resolve_relatively(report, shrunk_run):
    assert report == shrunk_run / "report.md"
    links = MD_LINK.findall(report.read_text())
    assert len(links) > 50
    for link in links:
        assert not link.startswith("/"), link                  # relative links only
        if not link.startswith("#"):                            # in-page: test_contents_...
            assert (shrunk_run / link).is_file(), link
    linked = set(links)
    for needed in ("tables/table1.csv", "tables/table1.md", "tables/table3.md", "tables/table3.csv",
                   "tables/table2.csv", "tables/complexity.csv", "tables/landmarks.csv",
                   "confusion/ckplus_el.png", "confusion/sfew_el.png", "confusion/ckplus_el-mouth.csv",
                   "confusion/sfew_on_jaffe_el.png", "figures/ckplus_curves.png",
                   "figures/sfew_accuracy.png", "figures/ckplus_landmarks.png",
                   "figures/sfew_landmarks.png", "figures/ckplus_gradcam.png", "config.yaml"):
        assert needed in linked, needed


def test_report_html_holds_every_section_and_resolves(report, shrunk_run):
    page = (shrunk_run / "report.html").read_text()
    headings = re.findall(r"<h[23][^>]*>(.*?)</h[23]>", page)
    for section in SECTIONS:
        assert section.replace("'", "&#x27;") in headings, section
    refs = HTML_REF.findall(page)
    images = re.findall(r'<img alt="[^"]*" src="([^"]+)"', page)
    assert len(images) >= 10 and "figures/ckplus_gradcam.png" in images
    for ref in refs:
        assert ref.startswith("#") or (shrunk_run / ref).is_file(), ref
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # every Markdown table became an HTML table
    separators = [line for line in report.read_text().splitlines() if line.startswith("|---")]
    assert page.count("<table>") == len(separators) > 12


def test_report_states_settings_data_sets_and_banners(report):
    text = report.read_text()
    assert "**SYNTHETIC DATA**" in text and "**SHRUNK RUN" in text
    assert text.index("SHRUNK RUN") < text.index("## Table I")
    assert "> - image size 32 (paper: 160)" in text and "> - CK+: 3 folds (paper: 10)" in text
    for row in ("| image_size | 32 |", "| epochs_scale | 0.01 |", "| seed | 7 |", "| device | cpu |",
                "| executor | inline |", "| detector | none |", "| annotator | dlib-ert68 |"):
        assert row in text
    assert "| CK+ (`ckplus`) | kfold | 3 | 12 | anger, contempt, happiness, surprise |" in text
    assert "| SFEW (`sfew`) | holdout | 1 | 6 | anger, happiness, surprise | ckplus, jaffe |" in text
    assert "60 of 60 planned models have usable predictions." in text
    assert "The run recorded no package versions." in text and "The run recorded no timings." in text


def test_report_sets_every_table_beside_the_paper(report):
    text = report.read_text()
    assert "| paper | 82.56 | 95.87 | 93.29 | 93.96 | 91.86 | 95.16 | 93.28 | 97.31 |" in text
    # Table II: our EL accuracy and parameter count (5 x 328,980 for CK+'s 4 classes).
    assert "| CK+ | 56.11 | 97.31 | -41.20 | 3/3 | 96.80 [22] | -40.69 | 1.645 | 1.65 | 11 |" in text
    for heading in ("### SFEW Train -> SFEW Valid", "### SFEW Train -> CK+",
                    "### SFEW Train -> JAFFE"):
        assert heading in text
    assert "(contempt 3)" in text and "(fear 1)" in text
    assert "| paper | 16.90 | 26.29 | 22.54 | 24.88 | 18.78 | 24.88 | 21.60 | 30.51 |" in text
    # Confusion matrices: EL on CK+ folds, on the SFEW validation set, and across data sets.
    for stem in ("ckplus_el", "sfew_el", "sfew_on_ckplus_el", "sfew_on_jaffe_el"):
        assert f"![{stem}](confusion/{stem}.png)" in text
    # The landmark study, Grad-CAM and complexity sections.
    assert ("| CK+ | EL | mouth | 0.0200 | 0.0100 | -0.0100 | -50.0 | 3.20 | 1.60 | -1.60 | 0.99 | "
            "decreased | decreased | 3/3 | 3/3 | 12 |") in text
    assert "![ckplus_gradcam.png](figures/ckplus_gradcam.png)" in text
    assert "- SFEW: no Grad-CAM figure: the run wrote no analysis/gradcam_sfew.npz" in text
    assert "| sub-network FLOPs | 8 | GFLOPs | 0.6408 | 640,795,448 | 0.555 |" in text
    assert "its 31.5 MB counts the five models twice" in text


def test_missing_folds_are_named_and_used_in_no_number(make_run):
    run = make_run(cross=("ckplus",), landmarks=True,
                   drop_models={model_key("ckplus", "el", "nose", 1)},
                   drop_rows={model_key("ckplus", "baseline", "m2", 0): ["ck00"]},
                   drop_landmarks={(model_key("ckplus", "el", "eyes", 2), "landmark")})
    (run.parent.parent / "models" / model_key("sfew", "el", "jaw", 0) / "cross_ckplus.parquet").unlink()
    text = build_report(run).read_text()
    assert "> **INCOMPLETE RUN**: 1 of 60 planned models have no usable predictions" in text
    assert "59 of 60 planned models have usable predictions." in text
    assert "| ckplus | el | nose | finetune | 1 | no predictions.parquet |" in text
    assert "| ckplus | baseline | 0 | ckplus | m2 | 1 | 3 |" in text
    assert "EL: mean over 2 of 3 folds; missing folds 1" in text
    assert "CK+ (`ckplus`) EL: missing fold(s) 1 of 3" in text
    # The SFEW jaw model's CK+ file is gone: the cross EL ensemble has no fold left.
    assert "**Missing cross-data-set predictions**" in text
    assert "| sfew | el | jaw | finetune | 0 | file absent |" in text
    assert "EL: no scored predictions (see Missing models)" in text
    # The landmark study leaves fold 2 of the eyes network out, and says so.
    assert "CK+ el eyes: no usable model in fold(s) 2; those folds are left out" in text
    assert "| CK+ | EL | eyes | 0.0150 | 0.0120 |" in text       # folds 0, 1: (0.01 + 0.02) / 2


def test_rebuild_is_idempotent_and_leaves_no_temp_files(make_run, complexity_report):
    run = make_run(datasets=("sfew",), cross=(), landmarks=True, prepared=True,
                   complexity=complexity_report, gradcam=("sfew",))
    build_report(run)
    first = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    build_report(run)
    second = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert first.keys() == second.keys()
    changed = [str(p) for p in first if first[p] != second[p]]
    assert changed == []
    assert not [p for p in first if p.name.endswith(".tmp")]
    names = {p.name for p in first}
    assert {"report.md", "report.html", "sfew_gradcam.png", "sfew_landmarks.png"} <= names


def test_faithful_run_shows_versions_timings_and_no_banner(make_run):
    settings = dict(PAPER_SETTINGS, shrunk_reasons=[], status="finished", started=1700000000.0,
                    finished=1700003725.5, wall_seconds=3725.5, train_seconds=3600.0,
                    train_images=7200000, trained_model_stages=35,
                    versions={"python": "3.11.9", "torch": "2.14.1", "ray": None})
    run = make_run(settings=settings, datasets=("sfew",), cross=(), histories=False)
    text = build_report(run).read_text()
    for banner in ("SHRUNK RUN", "SYNTHETIC DATA", "NOT comparable", "PARTIAL RUN", "INCOMPLETE"):
        assert banner not in text
    assert "Table III is skipped" in text and "No training curves" in text
    assert "| torch | 2.14.1 |" in text and "| ray | not installed |" in text
    assert "| started | 2023-11-14 22:13:20 UTC |" in text
    assert "| finished | 2023-11-14 23:15:25 UTC |" in text
    assert "| wall seconds | 3725.5 s (1 h 2 min 6 s) |" in text
    assert "| train images | 7200000 |" in text
    assert "| training throughput | 2,000 images/s (summed over models) |" in text
    assert "No complexity figures: `analysis/complexity.json` is absent." in text
    assert "- SFEW: no Grad-CAM figure" in text
    assert "shrunk_reasons" not in text


def test_partial_run_is_marked(make_run):
    run = make_run(settings=dict(PAPER_SETTINGS, status="running", shrunk_reasons=[]),
                   datasets=("sfew",), cross=(), histories=False,
                   drop_models={model_key("sfew", "ftl", "m3", 0)})
    text = build_report(run).read_text()
    assert "> **PARTIAL RUN**: the run's status is 'running', not finished" in text
    assert "> **INCOMPLETE RUN**: 1 of 15 planned models" in text
    assert "FTL: no scored predictions (see Missing models)" in text


def test_report_leads_with_table1_and_ends_with_the_appendix(report):
    text = report.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Table I: accuracy (%), ours beside the paper's"
    assert headings[-1] == "## Appendix: settings, versions, timings, data sets, completeness"
    assert text.index("SHRUNK RUN") < text.index("## Table I") < text.index("### Settings")
    for counter in ("### Settings", "### Versions", "### Timings", "### Data sets", "### Completeness"):
        assert text.index("## Appendix") < text.index(counter)
    table1 = text[text.index("## Table I"):text.index("## Table II")]
    sd = np.std([75.0, 60.0, 100 / 3], ddof=1)
    assert f"| ± sd over folds |" in table1 and f"±{sd:.2f} |" in table1
    assert ("| network | accuracy (mean ± sd) | macro-F1 | recall anger | recall contempt | "
            "recall happiness | recall surprise |") in table1
    assert f"| EL | 56.11 ± {sd:.2f} |" in table1
    for network in ("baseline", "ftl", "el"):          # every network's matrix, not only EL's
        for stem in (f"ckplus_{network}", f"sfew_{network}", f"sfew_on_ckplus_{network}"):
            assert f"![{stem}](confusion/{stem}.png)" in text


def test_contents_link_every_section_to_a_heading_id(report, shrunk_run):
    text = report.read_text()
    lines = text.splitlines()
    assert lines[2].startswith("**Contents**: ")                        # under the title
    entries = re.findall(r"\[([^\]]+)\]\(#([^)]+)\)", lines[2])
    sections = [line[3:] for line in lines if line.startswith("## ")]
    assert [label for label, _ in entries] == [
        "Table I", "Significance", "Table II", "Table III", "Confusion matrices",
        "Landmarks before and after fine-tuning", "Grad-CAM", "Model complexity",
        "Training curves and accuracy charts", "Appendix", "Provenance"]
    assert len(entries) == len(sections) + 1
    page = (shrunk_run / "report.html").read_text()
    ids = re.findall(r'<h[2-6] id="([^"]+)">', page)
    assert len(ids) == len(set(ids))                     # repeated titles (### CK+) get -1, -2
    for (label, anchor), title in zip(entries, sections):
        assert title.startswith(label)
        assert re.search(f'<h2 id="{re.escape(anchor)}">', page), (title, anchor)
    assert 'id="table-i-accuracy--ours-beside-the-papers"' in page     # GitHub's slug
    assert '<h3 id="provenance">Provenance</h3>' in page
    for ref in re.findall(r'href="#([^"]+)"', page):
        assert ref in ids, ref


def test_significance_follows_table1_with_its_files(report, shrunk_run):
    text = report.read_text()
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[1] == "## Significance: paired tests and bootstrap intervals"
    section = text[text.index("## Significance"):text.index("## Table II")]
    assert "**3 folds: too few for the Wilcoxon test to reach p < 0.05** (its smallest exact " \
           "two-sided p is 0.25" in section
    assert "1 fold: the Wilcoxon test needs several paired folds" in section      # SFEW
    assert "| Baseline - FTL | 3 | -50.00 | 0 |" in section
    assert "2000 resamples of the test images within each fold" in section
    for name in ("significance_wilcoxon.csv", "significance_mcnemar.csv", "bootstrap_intervals.csv"):
        assert f"[{name}](tables/{name})" in section and (shrunk_run / "tables" / name).is_file()


def test_every_figure_has_a_caption_saying_what_it_shows(report, shrunk_run):
    lines = report.read_text().splitlines()
    images = [i for i, line in enumerate(lines) if line.startswith("![")]
    assert len(images) >= 10
    for i in images:
        assert lines[i + 1].startswith("*Figure: ") and lines[i + 1].endswith("*"), lines[i]
    page = (shrunk_run / "report.html").read_text()
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", page)
    assert len(captions) == len(images)
    assert not [c for c in captions if c.endswith(".png") or "_" in c], captions
    text = "\n".join(lines)
    assert "*Figure: CK+: loss (left of each pair, linear axis) and accuracy (right)" in text
    assert "*Figure: CK+: where each network looks." in text


def test_provenance_leads_the_appendix(report):
    text = report.read_text()
    appendix = text[text.index("## Appendix"):]
    assert appendix.index("### Provenance") < appendix.index("### Settings")
    assert "| GPU-hours | 0 (CPU run, device cpu) |" in appendix
    assert "| device | cpu |" in appendix and "| git commit | not recorded |" in appendix


def test_complexity_states_the_size_it_was_counted_at(report):
    # shrunk_run trained at 32 px; its complexity.json (describe's default) was counted at 160
    section = report.read_text().split("## Model complexity")[1].split("\n## ")[0]
    assert ("**Counted at 160x160 inputs, but this run trained on 32x32 inputs**") in section
