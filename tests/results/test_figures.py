"""Training curves from history.csv and the ours-vs-paper accuracy charts."""

import math

from png_checks import assert_drawn, colour_pixels, read_png
from partfer.results.evaluate import evaluate_run
from partfer.results.figures import load_histories, write_figures
from partfer.results.load import load_run
from partfer.results.paper import TABLE1
from run_builder import PAPER_SETTINGS, model_key

OURS, PAPER = "#1f77b4", "#ff7f0e"      # matplotlib's first two cycle colours: our bars, the paper's


def test_curves_where_histories_exist_and_accuracy_charts(shrunk_run):
    results = load_run(shrunk_run)
    histories = load_histories(results)
    assert histories.absent == 15 and histories.rejected == []     # SFEW models wrote none
    # CK+: 45 models, fold f ran 3 + f epochs -> 15 x (3 + 4 + 5) rows.
    assert len(histories.frame) == 15 * 12
    files = write_figures(evaluate_run(results), shrunk_run, histories)
    assert set(files) == {"ckplus_curves.png", "ckplus_accuracy.png", "sfew_accuracy.png"}
    for dataset in ("ckplus", "sfew"):
        pixels = read_png(files[f"{dataset}_accuracy.png"])
        assert_drawn(pixels, (9, 4))
        assert colour_pixels(pixels, OURS) > 500, f"{dataset}: no bars of ours"
        assert (colour_pixels(pixels, PAPER) > 500) is (dataset in TABLE1), f"{dataset}: the paper's bars"
    # one panel per (stage, network) with histories, three to a row
    ck = histories.frame[histories.frame["dataset"] == "ckplus"]
    panels = len({(s, n) for s, n in ck[["stage", "network"]].itertuples(index=False)})
    ncols = min(3, panels)
    pixels = read_png(files["ckplus_curves.png"])
    assert_drawn(pixels, (4.5 * ncols, 3.4 * math.ceil(panels / ncols)))
    assert colour_pixels(pixels, OURS) > 200, "no median line of the first member"


def test_unusable_history_is_named_with_its_reason(make_run):
    run = make_run(settings=PAPER_SETTINGS, datasets=("ckplus",))
    key = model_key("ckplus", "el", "eyes", 1)
    bad = run.parent.parent / "models" / key / "history.csv"
    bad.write_text("epoch,train_loss\n1,0.5\n")
    histories = load_histories(load_run(run))
    assert histories.rejected == [f"{bad}: lacks column(s) val_loss"]
    assert len(histories.frame) == 15 * (3 + 4 + 5) - 4    # the rejected fold-1 history had 4 epochs


def test_loss_curves_use_a_log_axis(shrunk_run):
    from partfer.results.figures import plot_curves
    frame = load_histories(load_run(shrunk_run)).frame
    fig = plot_curves("ckplus", frame[frame["dataset"] == "ckplus"].dropna(subset=["val_loss"]))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert shown and all(ax.get_yscale() == "log" for ax in shown)
