"""Training curves from history.csv and the ours-vs-paper accuracy charts."""

import math

from png_checks import assert_drawn, colour_pixels, read_png
from partfer.results.evaluate import evaluate_run
from partfer.results.figures import PAIRS_PER_ROW, PANEL_SIZE, load_histories, write_figures
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
    # a (loss, accuracy) pair of panels per (stage, network) with histories, two pairs to a row
    ck = histories.frame[histories.frame["dataset"] == "ckplus"]
    panels = len({(s, n) for s, n in ck[["stage", "network"]].itertuples(index=False)})
    pairs = min(PAIRS_PER_ROW, panels)
    width, height = PANEL_SIZE
    pixels = read_png(files["ckplus_curves.png"])
    assert_drawn(pixels, (2 * pairs * width, height * math.ceil(panels / pairs)))
    assert colour_pixels(pixels, OURS) > 200, "no median line of the first member"


def test_unusable_history_is_named_with_its_reason(make_run):
    run = make_run(settings=PAPER_SETTINGS, datasets=("ckplus",))
    key = model_key("ckplus", "el", "eyes", 1)
    bad = run.parent.parent / "models" / key / "history.csv"
    bad.write_text("epoch,train_loss\n1,0.5\n")
    histories = load_histories(load_run(run))
    assert histories.rejected == [f"{bad}: lacks column(s) val_loss"]
    assert len(histories.frame) == 15 * (3 + 4 + 5) - 4    # the rejected fold-1 history had 4 epochs


def test_loss_on_linear_axes_with_plain_ticks_beside_accuracy(shrunk_run):
    from partfer.results.figures import plot_curves
    frame = load_histories(load_run(shrunk_run)).frame
    fig = plot_curves("ckplus", frame[frame["dataset"] == "ckplus"])
    fig.canvas.draw()                       # tick labels are set when drawn
    shown = [ax for ax in fig.axes if ax.get_visible()]
    loss = [ax for ax in shown if ax.get_ylabel() == "loss"]
    accuracy = [ax for ax in shown if ax.get_ylabel() == "accuracy (%)"]
    assert len(loss) == len(accuracy) == 3 and len(shown) == 6     # baseline, FTL, EL stages
    assert all(ax.get_yscale() == "linear" for ax in shown)
    for ax in shown:
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels and not [t for t in labels if "10^" in t or "times" in t or "e" in t], labels
    # history.csv's val_acc of 0.5 drawn in %
    assert all(abs(line.get_ydata()[0] - 50.0) < 1e-9 for line in accuracy[0].lines)


def test_a_towering_first_epoch_cuts_the_loss_axis_and_says_so():
    import pandas as pd
    from partfer.results.figures import HISTORY_COLUMNS, plot_curves
    rows = [["d", "el", "eyes", 0, "landmark", e, math.nan, loss, math.nan, math.nan]
            for e, loss in ((1, 4000.0), (2, 2.0), (3, 1.5), (4, 1.2))]
    fig = plot_curves("ckplus", pd.DataFrame(rows, columns=HISTORY_COLUMNS))
    loss, accuracy = fig.axes[:2]
    assert loss.get_yscale() == "linear" and loss.get_ylim()[1] < 10
    assert any("cut: up to 4,000" in t.get_text() for t in loss.texts)
    assert any("no accuracy recorded" in t.get_text() for t in accuracy.texts)


def test_earlier_transfer_stages_histories_are_drawn_too(make_run):
    run = make_run(settings=PAPER_SETTINGS, datasets=("ckplus",), landmarks=True)
    store = run.parent.parent
    key = model_key("ckplus", "el", "eyes", 0)
    (store / "models" / f"{key}-landmark" / "history.csv").write_text(
        "epoch,train_loss,val_loss\n1,900.0,850.0\n2,3.0,2.5\n")
    histories = load_histories(load_run(run))
    landmark = histories.frame[histories.frame["stage"] == "landmark"]
    assert list(landmark["val_loss"]) == [850.0, 2.5] and set(landmark["member"]) == {"eyes"}
    assert histories.absent == 0                         # earlier stages need not leave one
