"""Training curves from history.csv and the ours-vs-paper accuracy charts."""

from partfer.results.evaluate import evaluate_run
from partfer.results.figures import load_histories, write_figures
from partfer.results.load import load_run
from run_builder import PAPER_SETTINGS, model_key

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_curves_where_histories_exist_and_accuracy_charts(shrunk_run):
    results = load_run(shrunk_run)
    histories = load_histories(results)
    assert histories.absent == 15 and histories.rejected == []     # SFEW models wrote none
    # CK+: 45 models, fold f ran 3 + f epochs -> 15 x (3 + 4 + 5) rows.
    assert len(histories.frame) == 15 * 12
    files = write_figures(evaluate_run(results), shrunk_run, histories)
    assert set(files) == {"ckplus_curves.png", "ckplus_accuracy.png", "sfew_accuracy.png"}
    for path in files.values():
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000


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
