"""Confusion matrix files: labelled fold-summed counts and non-empty heat maps per system."""
import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

from partfer.results.confusion import write_confusions
from partfer.results.evaluate import evaluate_run
from partfer.results.load import load_run
from png_checks import DPI, assert_drawn, colour_pixels, panel_grid, read_png
from run_builder import CK_CLASSES, PARTS, SFEW_CLASSES, model_key

CELL = 0.55          # inches per matrix cell (results.confusion.plot_confusion)


def _figsize(n_classes: int) -> tuple[float, float]:
    """plot_confusion's size: fixed margins around n x n cells, at least 4 inches wide."""
    return max(1.25 + 0.2 + CELL * n_classes, 4.0), 1.15 + 0.75 + CELL * n_classes


@pytest.fixture(scope="module")
def written(shrunk_run):
    ev = evaluate_run(load_run(shrunk_run))
    return ev, write_confusions(ev, shrunk_run)


def test_every_network_and_part_has_csv_and_png(written):
    _, files = written
    stems = {f"{d}_{n}" for d in ("ckplus", "sfew") for n in ("baseline", "ftl", "el")}
    stems |= {f"{d}_el-{p}" for d in ("ckplus", "sfew") for p in PARTS}
    for test in ("ckplus", "jaffe"):
        stems |= {f"sfew_on_{test}_{n}" for n in ("baseline", "ftl", "el")}
        stems |= {f"sfew_on_{test}_el-{p}" for p in PARTS}
    assert set(files) == stems
    for stem, paths in files.items():
        classes = pd.read_csv(paths["csv"], index_col=0).index
        pixels = read_png(paths["png"])
        assert_drawn(pixels, _figsize(len(classes)))
        assert panel_grid(pixels) == (1, 1), stem


def test_csv_is_the_labelled_fold_sum(written):
    ev, files = written
    frame = pd.read_csv(files["ckplus_el"]["csv"], index_col=0)
    assert list(frame.index) == CK_CLASSES and list(frame.columns) == CK_CLASSES
    score = ev.score("ckplus", "ckplus", "EL")
    np.testing.assert_array_equal(frame.to_numpy(), sum(score.fold_confusion.values()))
    # the heat map shows these row shares: each share's Blues colour fills its cells (less text)
    counts = frame.to_numpy()
    shares = np.round(counts / counts.sum(axis=1, keepdims=True), 6)
    pixels = read_png(files["ckplus_el"]["png"])
    for share in np.unique(shares):
        cells = int((shares == share).sum())
        assert colour_pixels(pixels, colormaps["Blues"](share)) > cells * (CELL * DPI) ** 2 / 2, share
    mouth = pd.read_csv(files["ckplus_el-mouth"]["csv"], index_col=0)
    assert np.trace(mouth.to_numpy()) == 4       # 33.33% pooled of 12 samples
    cross = pd.read_csv(files["sfew_on_ckplus_el"]["csv"], index_col=0)
    assert "contempt" not in cross.index and cross.to_numpy().sum() == 9
    jaffe = pd.read_csv(files["sfew_on_jaffe_el"]["csv"], index_col=0)
    assert list(jaffe.index) == SFEW_CLASSES and np.trace(jaffe.to_numpy()) == 4


def test_sfew_validation_set_is_one_holdout_matrix(written):
    # Fig. 9: SFEW's EL on its validation set (a single hold-out fold): AABCDE -> 4 of 6.
    ev, files = written
    frame = pd.read_csv(files["sfew_el"]["csv"], index_col=0)
    assert list(frame.index) == SFEW_CLASSES and frame.to_numpy().sum() == 6
    assert np.trace(frame.to_numpy()) == 4
    np.testing.assert_array_equal(frame.to_numpy(), ev.score("sfew", "sfew", "EL").fold_confusion[0])


def test_system_without_predictions_gets_no_matrix(make_run):
    drop = {model_key("ckplus", "el", "jaw", f) for f in (0, 1, 2)}
    run = make_run(datasets=("ckplus",), drop_models=drop)
    ev = evaluate_run(load_run(run))
    files = write_confusions(ev, run)
    assert "ckplus_el-jaw" not in files and "ckplus_el" not in files   # EL needs all 5 parts
    assert "ckplus_el-mouth" in files


def test_heat_map_is_row_normalised_with_counts_in_the_cells(written):
    from partfer.results.confusion import plot_confusion, row_normalised
    assert row_normalised(np.array([[3, 1], [0, 0]])).tolist() == [[0.75, 0.25], [0.0, 0.0]]
    ev, _ = written
    score = ev.score("ckplus", "ckplus", "EL")
    fig = plot_confusion(score)
    image = fig.axes[0].images[0]
    shares = row_normalised(score.confusion)
    np.testing.assert_allclose(image.get_array(), shares)
    assert image.get_clim() == (0, 1)
    cells = [t.get_text() for t in fig.axes[0].texts]
    n = len(score.classes)
    assert cells == [f"{100 * shares[i, j]:.0f}%\n({int(score.confusion[i, j])})"
                     for i in range(n) for j in range(n)]
