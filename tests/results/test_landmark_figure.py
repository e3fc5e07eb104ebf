"""Fig. 10: EL points before/after fine-tuning drawn on prepared test crops."""
from partfer.data_prep.ibug68 import PART_COLOURS
from partfer.results.landmark_figure import choose_faces, load_crops, write_landmark_figures
from partfer.results.landmarks import load_landmark_study
from partfer.results.load import load_run
from png_checks import assert_drawn, colour_pixels, panel_grid, read_png
from run_builder import model_key


def test_figure_of_six_sfew_faces_from_the_prepared_crops(make_run):
    run = make_run(datasets=("sfew",), cross=(), landmarks=True, prepared=True)
    results = load_run(run)
    study = load_landmark_study(results)
    crops, problem = load_crops(results, "sfew")
    assert problem is None and crops.images.shape == (6, 48, 48)
    choice = choose_faces(study, "sfew", dict(zip(crops.sample_ids, crops.labels)))
    # One face per expression in turn: anger, happiness, surprise, then again.
    assert choice.fold == 0 and choice.sample_ids == ["sf0", "sf1", "sf2", "sf3", "sf4", "sf5"]
    assert sorted(choice.parts) == ["eyebrows", "eyes", "jaw", "mouth", "nose"]
    written, notes = write_landmark_figures(study, results, run)
    assert notes == [] and set(written) == {"sfew_landmarks.png"}
    pixels = read_png(written["sfew_landmarks.png"])
    assert_drawn(pixels, (1.9 * 6 + 0.4, 5.0))
    assert panel_grid(pixels) == (2, 6)                      # before / after, one column per face
    # every part's points are drawn in its colour on the faces, far more than its legend marker
    for part, colour in PART_COLOURS.items():
        assert colour_pixels(pixels, colour) > 200, part
    assert colour_pixels(pixels, "lightgrey") > 200          # the true points


def test_fold_with_every_part_is_chosen_and_faces_capped(make_run):
    # Fold 0's eyes model lost its fine-tuned points: fold 1 has all five parts.
    run = make_run(datasets=("ckplus",), landmarks=True, histories=False,
                   drop_landmarks={(model_key("ckplus", "el", "eyes", 0), "finetune")})
    study = load_landmark_study(load_run(run))
    labels = {f"ck{i:02d}": "x" for i in range(12)}
    choice = choose_faces(study, "ckplus", labels, n_faces=3)
    assert choice.fold == 1 and choice.sample_ids == ["ck04", "ck05", "ck06"]
    assert choose_faces(study, "sfew", labels) is None


def test_absent_prepared_data_skips_the_figure_with_a_note(make_run):
    run = make_run(datasets=("sfew",), cross=(), landmarks=True)      # plan names /prep/sfew
    results = load_run(run)
    written, notes = write_landmark_figures(load_landmark_study(results), results, run)
    assert written == {}
    assert len(notes) == 1 and notes[0].startswith("SFEW: no Fig. 10 figure: prepared data")
    assert "/prep/sfew" in notes[0]
    assert not (run / "figures" / "sfew_landmarks.png").exists()
