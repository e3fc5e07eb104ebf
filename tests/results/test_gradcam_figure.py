"""Fig. 11 from constructed gradcam npz files: the contract check and the figure."""
import numpy as np
import pytest

from partfer.results.gradcam import (GradcamFileError, gradcam_files, plot_gradcam, read_gradcam,
                             write_gradcam_figures)
from partfer.orchestrator.networks import gradcam_systems
from png_checks import assert_drawn, chromatic_share, panel_grid, read_png
from run_builder import write_gradcam

GRADCAM_SYSTEMS = tuple(gradcam_systems())          # Fig. 11's columns


def _npz(tmp_path, name="ckplus", **change):
    path = tmp_path / "analysis" / f"gradcam_{name}.npz"
    write_gradcam(path, name)
    if change:
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files}
        for key, value in change.items():
            if value is None:
                arrays.pop(key)
            else:
                arrays[key] = value
        np.savez(path, **arrays)
    return path


def test_contract_is_read_and_every_system_drawn(tmp_path):
    gc = read_gradcam(_npz(tmp_path), "ckplus")
    assert gc.images.shape == (3, 48, 48) and gc.sample_ids == ["ck00", "ck01", "ck02"]
    assert gc.labels == ["anger", "contempt", "happiness"]
    assert list(gc.maps) == list(GRADCAM_SYSTEMS) and gc.absent == []
    assert gc.classes[int(gc.preds["el-mouth"][0])] == "contempt"
    written, notes = write_gradcam_figures(tmp_path, ["ckplus", "sfew"])
    assert set(written) == {"ckplus_gradcam.png"}
    assert notes == ["SFEW: no Grad-CAM figure: the run wrote no analysis/gradcam_sfew.npz"]
    pixels = read_png(written["ckplus_gradcam.png"])
    ncols = 1 + len(GRADCAM_SYSTEMS)                         # the crop, then one map per system
    assert_drawn(pixels, (1.45 * ncols, 1.65 * 3 + 0.5))
    assert panel_grid(pixels) == (3, ncols)                  # a row per face
    # the maps are drawn in jet over grey crops: most of each map panel is coloured
    assert chromatic_share(pixels) > 0.3


def test_absent_systems_are_left_out_and_named(tmp_path):
    path = _npz(tmp_path, **{"map_el-jaw": None, "pred_el-jaw": None, "map_ftl": None,
                             "pred_ftl": None})
    gc = read_gradcam(path, "ckplus")
    assert gc.absent == ["ftl", "el-jaw"] and "ftl" not in gc.maps
    fig = plot_gradcam(gc)
    assert len(fig.axes) == 3 * (1 + len(GRADCAM_SYSTEMS) - 2)
    written, notes = write_gradcam_figures(tmp_path, ["ckplus"])
    assert notes == ["CK+: Grad-CAM maps absent for FTL, EL jaw"]
    assert panel_grid(read_png(written["ckplus_gradcam.png"])) == (3, 1 + len(GRADCAM_SYSTEMS) - 2)


@pytest.mark.parametrize("change, message", [
    ({"map_baseline": np.full((3, 48, 48), 1.5)}, "map_baseline must lie in [0, 1]"),
    ({"pred_ftl": np.array([0, 1, 9])}, "pred_ftl holds a class index outside 0..3"),
    ({"pred_ftl": np.array([0, -2, 1])}, "pred_ftl holds a class index outside 0..3"),
    ({"pred_ftl": np.array([0.0, 1.0, 2.0])}, "pred_ftl must be (K=3,) integers"),
    ({"images": np.zeros((3, 48, 48), np.float32)}, "images must be (K, S, S) uint8"),
    ({"labels": np.array(["anger"])}, "labels must be a vector of 3 names"),
    ({"sample_ids": None}, "lacks array(s) sample_ids"),
    ({"pred_el-eyes": None}, "el-eyes: has only one of map_el-eyes, pred_el-eyes"),
    ({"sample_ids": np.array([object(), object(), object()], dtype=object)}, "unreadable npz"),
])
def test_broken_files_are_refused_with_the_reason(tmp_path, change, message):
    path = _npz(tmp_path, **change)
    with pytest.raises(GradcamFileError) as caught:
        read_gradcam(path, "ckplus")
    assert message in str(caught.value)


def test_face_without_a_model_is_marked_not_drawn(tmp_path):
    # -1: the system has no model for that face's fold; the cell says so instead of a class.
    gc = read_gradcam(_npz(tmp_path, pred_baseline=np.array([-1, 0, 1])), "ckplus")
    fig = plot_gradcam(gc)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1] == "Baseline\nno model" and len(fig.axes[1].images) == 1
    assert len(fig.axes[2].images) == 2                          # FTL: crop + map


def test_broken_file_becomes_a_note_not_a_crash(tmp_path):
    _npz(tmp_path, "jaffe")
    (tmp_path / "analysis" / "gradcam_sfew.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert sorted(gradcam_files(tmp_path)) == ["jaffe", "sfew"]
    written, notes = write_gradcam_figures(tmp_path, [])
    assert set(written) == {"jaffe_gradcam.png"}
    assert len(notes) == 1 and notes[0].startswith("SFEW: no Grad-CAM figure: gradcam_sfew.npz: "
                                                   "unreadable npz")
