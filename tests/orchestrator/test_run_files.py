from partfer.orchestrator.run_files import RUNS_DIR, store_candidates


def test_a_run_inside_a_store_layout_names_that_store_first_then_the_recorded_one(tmp_path):
    run_dir = tmp_path / "copy" / RUNS_DIR / "abc123"
    run_dir.mkdir(parents=True)
    assert store_candidates(run_dir, str(tmp_path / "orig")) == [tmp_path / "copy", tmp_path / "orig"]
    assert store_candidates(run_dir, f"file://{tmp_path / 'orig'}") == [tmp_path / "copy", tmp_path / "orig"]
    # a store at another URI is read through its local copy: the layout is the only candidate
    assert store_candidates(run_dir, "s3://bucket/store") == [tmp_path / "copy"]


def test_a_run_folder_copied_on_its_own_has_only_the_recorded_local_store(tmp_path):
    run_dir = tmp_path / "abc123"
    run_dir.mkdir()
    assert store_candidates(run_dir, str(tmp_path / "orig")) == [tmp_path / "orig"]
    assert store_candidates(run_dir, "gs://bucket/store") == []
    assert store_candidates(run_dir, "") == []
