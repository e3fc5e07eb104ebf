"""The landmark before/after study on constructed landmarks.parquet files with known errors."""
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from partfer.results.landmarks import (LandmarkFileError, direction, load_landmark_study, models_frame,
                               read_points, study_markdown, summary_frame, write_landmark_tables)
from partfer.results.load import load_run
from run_builder import AFTER_FACTOR, build_run, model_key


@pytest.fixture(scope="module")
def ck_run(tmp_path_factory):
    return build_run(tmp_path_factory.mktemp("lm"), datasets=("ckplus",), landmarks=True,
                     histories=False)


def _store(run):
    return run.parent.parent


def _row(frame, network, region, dataset="ckplus"):
    return frame[(frame["dataset"] == dataset) & (frame["network"] == network)
                 & (frame["region"] == region)].iloc[0]


def test_every_transfer_model_is_paired_with_its_known_error(ck_run):
    study = load_landmark_study(load_run(ck_run))
    assert len(study.planned) == 30 and study.rejected == []      # FTL + EL, 5 members x 3 folds
    frame = models_frame(study)
    mouth1 = frame[(frame["member"] == "mouth") & (frame["fold"] == 1)].iloc[0]
    assert mouth1["n_samples"] == 5 and mouth1["region"] == "mouth"
    assert mouth1["mae_before"] == pytest.approx(0.02, abs=1e-6)           # 0.01 * (fold + 1)
    assert mouth1["mae_after"] == pytest.approx(0.02 * AFTER_FACTOR["mouth"], abs=1e-6)
    assert set(frame.loc[frame["network"] == "ftl", "region"]) == {"face"}


def test_summary_is_the_mean_over_folds_in_both_units(ck_run):
    frame = summary_frame(load_landmark_study(load_run(ck_run)))
    assert list(frame["region"]) == ["face", "eyebrows", "eyes", "nose", "mouth", "jaw"]
    for region, factor in AFTER_FACTOR.items():
        row = _row(frame, "ftl" if region == "face" else "el", region)
        # folds 0, 1, 2 miss by 0.01, 0.02, 0.03 before: mean 0.02 whatever the fold sizes
        assert row["mae_before"] == pytest.approx(0.02, abs=1e-6)
        assert row["mae_after"] == pytest.approx(0.02 * factor, abs=1e-6)
        assert row["change"] == pytest.approx(0.02 * (factor - 1), abs=1e-6)
        assert row["px_before"] == pytest.approx(0.02 * 160, abs=1e-4)
        assert row["px_after"] == pytest.approx(0.02 * factor * 160, abs=1e-4)
        assert (row["folds_used"], row["folds_planned"]) == (3, 3)
    mouth, jaw, nose = (_row(frame, "el", r) for r in ("mouth", "jaw", "nose"))
    assert (mouth["direction"], mouth["paper"]) == ("decreased", "decreased")
    assert (jaw["direction"], jaw["paper"]) == ("about the same", "almost the same")
    assert (nose["direction"], nose["paper"]) == ("increased", "larger increase")
    assert mouth["change_pct"] == pytest.approx(-50.0, abs=1e-3)
    face = _row(frame, "ftl", "face")
    assert (face["models_used"], face["models_planned"], face["samples"]) == (15, 15, 5 * 12)


def test_tables_are_written_with_both_units(ck_run, tmp_path):
    written = write_landmark_tables(load_landmark_study(load_run(ck_run)), tmp_path)
    assert set(written) == {"landmarks.csv", "landmarks_models.csv", "landmarks.md"}
    md = written["landmarks.md"].read_text()
    assert ("| CK+ | EL | mouth | 0.0200 | 0.0100 | -0.0100 | -50.0 | 3.20 | 1.60 | -1.60 | 0.99 | "
            "decreased | decreased | 3/3 | 3/3 | 12 |") in md
    header = written["landmarks.csv"].read_text().splitlines()[0]
    assert header.startswith("dataset,network,region,mae_before,mae_after,change,change_pct,"
                             "px_before,px_after,px_change,mae_mean_shape,px_mean_shape,direction,paper")


def test_missing_or_broken_files_leave_their_models_out_and_name_the_fold(make_run):
    eyes0 = model_key("ckplus", "el", "eyes", 0)
    run = make_run(datasets=("ckplus",), landmarks=True, histories=False,
                   drop_landmarks={(eyes0, "finetune")})
    store = _store(run)
    # EL nose fold 2 answers for the wrong region; FTL m1 fold 0 lost one test sample after.
    nose2 = store / "models" / f"{model_key('ckplus', 'el', 'nose', 2)}-landmark" / "landmarks.parquet"
    table = pq.read_table(nose2)
    pq.write_table(table.set_column(1, "region", pa.array(["mouth"] * len(table))), nose2)
    ftl_after = store / "models" / model_key("ckplus", "ftl", "m1", 0) / "landmarks.parquet"
    table = pq.read_table(ftl_after)
    pq.write_table(table.filter(pc.not_equal(table["sample_id"], "ck00")), ftl_after)
    study = load_landmark_study(load_run(run))
    reasons = {(r.record.member, r.record.fold): r.reason for r in study.rejected}
    assert reasons == {("eyes", 0): "no landmarks.parquet (finetune stage)",
                       ("nose", 2): "landmark stage: region 'mouth', expected 'nose' for this model"}
    frame = summary_frame(study)
    eyes = _row(frame, "el", "eyes")
    assert (eyes["folds_used"], eyes["missing_folds"]) == (2, "0")
    # Only folds 1 and 2 count: before (0.02 + 0.03) / 2.
    assert eyes["mae_before"] == pytest.approx(0.025, abs=1e-6)
    face = _row(frame, "ftl", "face")
    assert face["models_used"] == 15 and face["samples"] == 60 - 1
    md = study_markdown(study)
    assert "CK+ el eyes: no usable model in fold(s) 0; those folds are left out" in md
    assert "ckplus ftl m1 fold 0: 1 test samples in only one stage's file were left out" in md
    assert "| ckplus | el | nose | 2 | landmark stage: region 'mouth', expected 'nose'" in md


def test_files_that_break_the_contract_are_refused(make_run, tmp_path):
    run = make_run(datasets=("ckplus",), landmarks=True, histories=False)
    path = _store(run) / "models" / model_key("ckplus", "el", "jaw", 0) / "landmarks.parquet"
    good = pq.read_table(path)
    short = pa.array([[0.5, 0.5]] * len(good), pa.list_(pa.float32()))
    pq.write_table(good.set_column(2, "pred", short), tmp_path / "short.parquet")
    with pytest.raises(LandmarkFileError, match="pred must hold 34 values"):
        read_points(tmp_path / "short.parquet", "jaw")
    pq.write_table(good.drop_columns(["truth"]), tmp_path / "no_truth.parquet")
    with pytest.raises(LandmarkFileError, match="lacks column"):
        read_points(tmp_path / "no_truth.parquet", "jaw")
    # A different truth after fine-tuning means the stages saw different data: refused.
    moved = pc.list_flatten(good["truth"]).to_numpy() + 0.1
    shifted = pa.FixedSizeListArray.from_arrays(pa.array(moved, pa.float32()), 34).cast(
        pa.list_(pa.float32()))
    pq.write_table(good.set_column(3, "truth", shifted), path)
    study = load_landmark_study(load_run(run))
    assert [(r.record.member, r.record.fold) for r in study.rejected] == [("jaw", 0)]
    assert "true points differ" in study.rejected[0].reason


def test_direction_words():
    assert direction(0.02, 0.0205) == "about the same"
    assert direction(0.02, 0.01) == "decreased" and direction(0.02, 0.03) == "increased"


def test_plan_without_stage_dirs_skips_the_study(make_run):
    run = make_run(datasets=("sfew",), cross=(), stage_dirs=False)
    study = load_landmark_study(load_run(run))
    assert study.planned == [] and study.models == []
    assert write_landmark_tables(study, run / "tables") == {}
    assert "the before/after study is skipped" in study_markdown(study)


def test_stage_dirs_without_files_are_all_listed_and_nothing_is_computed(make_run):
    run = make_run(datasets=("sfew",), cross=())          # stage_dirs, but no landmarks written
    study = load_landmark_study(load_run(run))
    assert len(study.planned) == 10 and len(study.rejected) == 10 and study.models == []
    frame = summary_frame(study)
    assert frame["mae_before"].isna().all() and (frame["folds_used"] == 0).all()
    md = study_markdown(study)
    assert "no data" in md and "**Models left out of the study**" in md
