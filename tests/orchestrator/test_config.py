import pytest

from partfer.orchestrator.config import ConfigError, epochs_for, load_config


def test_demo_includes_paper_and_overrides_win():
    cfg = load_config("demo", {"train.patience": 3, "image_size": 32})
    assert cfg["name"] == "demo"
    assert cfg["train"]["patience"] == 3 and cfg["image_size"] == 32
    assert cfg["train"]["adam"]["eps"] == 1e-7              # inherited from paper.yaml
    assert cfg["train"]["lr"]["finetune"] == 1e-3           # demo's own, over paper.yaml's 1e-4
    assert cfg["prep"]["detector"] == "none"                # demo's own


def test_paper_epochs_and_scaling():
    cfg = load_config("paper")
    assert [epochs_for(cfg, "ckplus", s) for s in ("baseline", "landmark")] == [400, 100]
    assert epochs_for(cfg, "ckplus", "head") + epochs_for(cfg, "ckplus", "finetune") == 300
    assert epochs_for(cfg, "sfew", "landmark") == 200
    scaled = load_config("paper", {"epochs_scale": 0.001})
    assert epochs_for(scaled, "jaffe", "baseline") == 1     # never below one epoch


@pytest.mark.parametrize("over,message", [
    ({"networks": ["baseline", "vgg"]}, "unknown network"),
    ({"parts": ["ears"]}, "unknown part"),
    ({"epochs_scale": 0}, "epochs_scale"),
    ({"image_size": 16}, "image_size"),
    ({"train.fused_bn": "yes"}, "train.fused_bn must be true or false"),
    ({"train.fused_augment": "auto"}, "train.fused_augment must be true or false"),
    ({"train.cuda_graphs": False}, "unknown config key train.cuda_graphs"),
    ({"projection.pack_rates": "fast"}, "projection.pack_rates must be a list"),
])
def test_bad_values_are_named(over, message):
    with pytest.raises(ConfigError, match=message):
        load_config("paper", over)


def test_missing_config_file_is_clear(tmp_path):
    with pytest.raises(ConfigError, match="config not found"):
        load_config(str(tmp_path / "nope.yaml"))


def test_include_cycle_detected(tmp_path):
    (tmp_path / "a.yaml").write_text("include: b.yaml\n")
    (tmp_path / "b.yaml").write_text("include: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(str(tmp_path / "a.yaml"))


def test_command_line_numbers_in_e_notation_are_numbers():
    from partfer.orchestrator.config import parse_value
    assert parse_value("1e-5") == 1e-5 and parse_value("3") == 3 and parse_value("[a, b]") == ["a", "b"]
    assert parse_value("ssd") == "ssd"


def test_an_including_config_replaces_the_synthetic_section():
    paper, demo = load_config("paper"), load_config("demo")
    assert set(paper["synthetic"]) == {"ckplus", "jaffe", "sfew"}
    assert set(demo["synthetic"]) == {"jaffe"}


def test_compile_mode_is_checked_and_yaml_booleans_read_as_modes():
    from partfer.orchestrator.config import compile_mode_of
    assert compile_mode_of(load_config("paper")) == "off"
    assert compile_mode_of(load_config("paper", {"train.compile": False})) == "off"
    assert compile_mode_of(load_config("paper", {"train.compile": True})) == "default"
    with pytest.raises(ConfigError, match="train.compile must be one of"):
        load_config("paper", {"train.compile": "fastest"})


@pytest.mark.parametrize("over,message", [
    ({"train.patiance": 3}, r"unknown config key train.patiance \(did you mean train.patience\?\)"),
    ({"train.lr.fintune": 1e-3}, r"did you mean train.lr.finetune\?"),
    ({"prep.detectr": "none"}, r"did you mean prep.detector\?"),
    ({"datasets.jaffe.epoch": {"baseline": 3}}, r"did you mean datasets.jaffe.epochs\?"),
    ({"image_size": "abc"}, "image_size must be a whole number, not 'abc'"),
    ({"seed": "x"}, "seed must be a whole number"),
    ({"epochs_scale": "x"}, "epochs_scale must be a number"),
    ({"train.patience": "x"}, "train.patience must be a whole number or null"),
    ({"train.batch_size": 0}, "train.batch_size must be >= 1"),
    ({"train.landmark_targets": "pixels"}, "train.landmark_targets must be one of crop, standardized"),
    ({"members": 0}, "members must be >= 1"),
    ({"networks": []}, "networks is empty"),
    ({"datasets.jaffe.epochs.baseline": 0}, "datasets.jaffe.epochs.baseline must be a whole number >= 1"),
    ({"train.selection": "best"}, "train.selection must be one of evaluated_fold, heldout_subjects, last"),
    ({"train.twin_selection": "peek"}, "train.twin_selection must be null or one of"),
    ({"train.transfer_bn": "off"}, "train.transfer_bn must be frozen or trainable"),
    ({"train.steps_per_epoch": 0}, "train.steps_per_epoch must be a whole number >= 1 or null"),
    ({"train.augment.shear": 0.05}, r"unknown config key train.augment.shear \(did you mean train.augment.shear_deg\?\)"),
    ({"train.augment.shear_deg": 75.0}, "0 <= shear_deg < 60"),
    ({"train.selection": "heldout_subjects", "train.val_subject_fraction": 0.0}, "needs train.val_subject_fraction"),
])
def test_strict_config_refuses_unknown_keys_and_bad_values_before_any_work(over, message):
    with pytest.raises(ConfigError, match=message):
        load_config("paper", over)


def test_paper_yaml_is_the_authors_recipe():
    tr = load_config("paper")["train"]
    assert tr["steps_per_epoch"] == 30 and tr["patience"] is None and tr["class_balanced"] is False
    assert tr["selection"] == "evaluated_fold" and tr["twin_selection"] == "last"
    assert tr["transfer_bn"] == "frozen"
    assert tr["augment"] == {"hflip": True, "rotation_deg": 15.0, "shift": 0.05, "shear_deg": 0.05}
    assert load_config("paper")["model"]["pool_padding"] == "same"
    # the other behaviours, one --set away
    other = load_config("paper", {"train.steps_per_epoch": None, "train.patience": 20, "train.selection": "last",
                                  "train.transfer_bn": "trainable", "train.class_balanced": True,
                                  "model.pool_padding": 0, "train.twin_selection": None})
    assert other["train"]["patience"] == 20 and other["model"]["pool_padding"] == 0


# Configs by concern: run.yaml (run settings) <- hardware/<profile>.yaml <- the experiment config.

def _leaf_paths(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _leaf_paths(value, f"{prefix}{key}.")
        else:
            out.add(f"{prefix}{key}")
    return out


def _raw(relative: str) -> dict:
    import yaml

    from partfer.orchestrator.config import CONFIG_DIR
    return yaml.safe_load((CONFIG_DIR / relative).read_text())


def test_each_default_has_one_source():
    paper, run, gpu = (_leaf_paths(_raw(f)) for f in ("paper.yaml", "run.yaml", "hardware/gpu.yaml"))
    assert "include" not in paper | run | gpu
    assert not paper & run, f"defined in paper.yaml and run.yaml: {sorted(paper & run)}"
    assert not paper & gpu, f"defined in paper.yaml and hardware/gpu.yaml: {sorted(paper & gpu)}"
    assert not run & gpu, f"defined in run.yaml and hardware/gpu.yaml: {sorted(run & gpu)}"
    # the paper's file holds no run setting and no machine sizing
    assert {"storage", "executor", "device", "train.checkpoint_every", "train.pack_size", "train.fused_bn"}.isdisjoint(paper)


def test_other_profiles_include_gpu_and_define_no_key_of_their_own():
    from partfer.orchestrator.config import hardware_profiles
    gpu = _leaf_paths(_raw("hardware/gpu.yaml"))
    for name in set(hardware_profiles()) - {"gpu"}:
        raw = _raw(f"hardware/{name}.yaml")
        assert raw.pop("include") == "gpu.yaml"
        assert _leaf_paths(raw) <= gpu, name


def test_the_composed_paper_config_keeps_todays_values():
    cfg = load_config("paper")
    assert cfg["hardware"] == "gpu" and cfg["storage"] == "partfer_store" and cfg["executor"] == "ray"
    assert cfg["device"] == "auto" and cfg["storage_shared"] is False
    tr = cfg["train"]
    assert (tr["pack_size"], tr["pack_size_cpu"], tr["gpus_per_pack"], tr["cpus_per_pack"]) == (50, 5, 0.33, 1)
    assert (tr["fused_bn"], tr["fused_augment"]) == (True, True)
    assert cfg["projection"] == {"gpu": "H200", "pack_rates": [[5, 13000.0], [50, 34700.0]],
                                 "trainer_start_seconds": 15.0}
    assert (tr["compile"], tr["precision"], tr["channels_last"], tr["cudnn_benchmark"]) == ("off", "auto", "auto", False)
    assert (tr["checkpoint_every"], tr["checkpoint_seconds"], tr["max_retries"], tr["deterministic"]) == (10, 60, 2, False)
    assert (tr["workers_per_run"], tr["gpus_per_worker"], tr["compact_stopped"]) == (0, 1.0, True)
    assert tr["batch_size"] == 32 and cfg["image_size"] == 160 and cfg["members"] == 5


@pytest.mark.parametrize("name", ["gpu", "cpu", "cluster"])
def test_each_hardware_profile_loads(name):
    from partfer.orchestrator.config import hardware_profiles
    assert name in hardware_profiles()
    cfg = load_config("paper", {"hardware": name})
    assert cfg["hardware"] == name
    assert cfg["train"]["lr"]["finetune"] == 1e-4 and cfg["storage"] == "partfer_store"   # paper.yaml, run.yaml


def test_the_profile_is_chosen_by_set_or_by_the_config(tmp_path):
    assert load_config("paper")["train"]["gpus_per_pack"] == 0.33
    assert load_config("paper", {"hardware": "cluster"})["train"]["gpus_per_pack"] == 1.0
    # an experiment config's own choice, and its own values over the profile's
    (tmp_path / "mine.yaml").write_text("include: paper.yaml\nhardware: cluster\n")
    assert load_config(str(tmp_path / "mine.yaml"))["train"]["gpus_per_pack"] == 1.0
    assert load_config(str(tmp_path / "mine.yaml"), {"hardware": "gpu"})["train"]["gpus_per_pack"] == 0.33
    (tmp_path / "sized.yaml").write_text("include: paper.yaml\nhardware: cluster\ntrain: {gpus_per_pack: 0.5}\n")
    assert load_config(str(tmp_path / "sized.yaml"))["train"]["gpus_per_pack"] == 0.5
    # a run setting and a profile value, each overridden on the command line
    cfg = load_config("demo", {"hardware": "cpu", "storage": "/tmp/x", "train.fused_bn": False})
    assert (cfg["hardware"], cfg["storage"], cfg["train"]["fused_bn"]) == ("cpu", "/tmp/x", False)
    assert cfg["train"]["pack_size_cpu"] == 6                                           # demo.yaml's own


def test_an_unknown_hardware_profile_is_refused_listing_the_known_ones():
    with pytest.raises(ConfigError, match=r"unknown hardware profile 'tpu'; known: cluster, cpu, gpu"):
        load_config("paper", {"hardware": "tpu"})


@pytest.mark.parametrize("over,message", [
    ({"train.fused_bnn": True}, r"unknown config key train.fused_bnn \(did you mean train.fused_bn\?\)"),
    ({"storag": "x"}, r"unknown config key storag \(did you mean storage\?\)"),
    ({"train.pack_size": "big"}, "train.pack_size must be a whole number, not 'big'"),
    ({"train.max_retries": -1}, "train.max_retries must be >= 0"),
    ({"storage_shared": "yes"}, "storage_shared must be true or false"),
    ({"train": None}, "train must be a mapping"),
])
def test_run_settings_and_hardware_keys_are_checked_as_strictly(over, message):
    with pytest.raises(ConfigError, match=message):
        load_config("paper", over)


def test_a_config_that_lacks_a_key_is_refused():
    from partfer.orchestrator.config import validate
    cfg = load_config("paper")
    del cfg["train"]["fused_bn"]
    with pytest.raises(ConfigError, match="config lacks train.fused_bn"):
        validate(cfg)


# ---- hostile config files ----------------------------------------------------------------------

SECRET_LINE = "password: hunter2-do-not-print\n"


def _one_line(err) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("where", ["absolute", "dotdot", "link"])
def test_an_include_may_name_only_shipped_configs_or_files_beside_the_config(tmp_path, where):
    tmp_path = tmp_path / ("deep" * 40) / ("er" * 80)        # long paths are named whole, never cut
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(parents=True)
    secret = elsewhere / "secret.yaml"
    secret.write_text(SECRET_LINE)
    mine = tmp_path / "project" / "mine.yaml"
    mine.parent.mkdir(parents=True)
    if where == "link":
        (mine.parent / "linked.yaml").symlink_to(secret)
    (mine.parent / "sub").mkdir()
    (mine.parent / "sub" / "base.yaml").write_text("include: demo\nimage_size: 48\n")
    mine.write_text("include: sub/base.yaml\nname: mine\n")           # beside it, then a shipped one
    cfg = load_config(str(mine))
    assert (cfg["name"], cfg["image_size"], cfg["prep"]["detector"]) == ("mine", 48, "none")
    include = {"absolute": str(secret), "dotdot": "../elsewhere/secret.yaml", "link": "linked.yaml"}[where]
    mine.write_text(f"include: {include}\nname: mine\n")
    with pytest.raises(ConfigError, match=f"{mine}: include '.*' is refused: it leads outside {mine.parent}") as err:
        load_config(str(mine))
    assert "hunter2" not in _one_line(err) and "password" not in str(err.value)
    assert "characters left out" not in str(err.value) and f"include {include!r}" in str(err.value)


def test_a_run_with_an_include_of_etc_passwd_is_one_line_that_echoes_nothing(tmp_path, capsys):
    from partfer.cli import main
    (tmp_path / "mine.yaml").write_text("include: /etc/passwd\n")
    assert main(["run", "--config", str(tmp_path / "mine.yaml"), "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "include '/etc/passwd' is refused" in err and ":0:0:" not in err, err
    assert not (tmp_path / "store").exists()


def test_yaml_aliases_are_refused(tmp_path):
    # a small "alias bomb": each level doubles the one below (30 levels are gigabytes once expanded)
    levels = "".join(f"l{i}: &l{i} [*l{i - 1}, *l{i - 1}]\n" for i in range(1, 6))
    (tmp_path / "bomb.yaml").write_text(f"include: demo\nl0: &l0 [x]\n{levels}synthetic_prep: {{detector: *l5}}\n")
    with pytest.raises(ConfigError, match=r"bomb.yaml: line 3: YAML aliases \(\*name\) are not allowed in a config") as err:
        load_config(str(tmp_path / "bomb.yaml"))
    _one_line(err)


def test_a_config_larger_than_a_mebibyte_is_refused_unread(tmp_path):
    (tmp_path / "big.yaml").write_text("include: demo\n" + "# padding\n" * 120_000)
    with pytest.raises(ConfigError, match=r"big.yaml: larger than 1024 KiB, too large for a config"):
        load_config(str(tmp_path / "big.yaml"))


def test_a_yaml_syntax_error_names_the_line_and_not_the_content(tmp_path):
    (tmp_path / "broken.yaml").write_text("include: demo\ntrain: {lr: [hunter2-secret-value\n")
    with pytest.raises(ConfigError, match=r"broken.yaml: not valid YAML at line \d+, column \d+") as err:
        load_config(str(tmp_path / "broken.yaml"))
    assert "hunter2" not in _one_line(err)


@pytest.mark.parametrize("over,message", [
    ({"train.lr.baseline": -0.01}, "train.lr.baseline must be > 0, not -0.01"),
    ({"train.lr.finetune": 0}, "train.lr.finetune must be > 0"),
    ({"train.adam.beta2": 1.0}, "train.adam.beta2 must be < 1"),
    ({"train.adam.eps": 0.0}, "train.adam.eps must be > 0"),
    ({"train.gpus_per_worker": 0}, "train.gpus_per_worker must be > 0"),
    ({"train.augment.rotation_deg": -5}, "train.augment.rotation_deg must be >= 0"),
    ({"image_size": 60000}, "image_size must be <= 1024, not 60000"),
    ({"prep.crop_size": 5000}, "prep.crop_size must be <= 1024"),
    ({"prep.ssd_confidence": 2}, "prep.ssd_confidence must be <= 1"),
    ({"model.widths": [16, 32, 100000]}, r"model: widths must be 1 to 8 channel counts in \[1, 2048\]"),
    ({"model.widths": ["a"]}, "model: widths must be a list of whole numbers"),
    ({"model.head_hidden": 10**6}, "model.head_hidden must be <= 4096"),
    ({"datasets.ckplus.folds": 1}, r"datasets.ckplus.folds must be >= 2 \(k-fold cross-validation\), not 1"),
    ({"datasets.jaffe.prep": {"crop_size": "big"}}, "datasets.jaffe.prep.crop_size must be a whole number, not 'big'"),
    ({"synthetic_prep": {"crop_size": 100000}}, "synthetic_prep.crop_size must be <= 1024"),
    ({"synthetic_prep": {"detectr": "none"}}, r"unknown config key synthetic_prep.detectr \(did you mean synthetic_prep.detector\?\)"),
    ({"synthetic.jaffe.subjects": -1}, r"synthetic.jaffe: subjects must be a whole number in \[1, 10000\], got -1"),
    ({"synthetic.jaffe.size": "abc"}, "synthetic.jaffe.size must be a whole number, not 'abc'"),
    ({"synthetic.jaffe.colour": 1}, "unknown config key synthetic.jaffe.colour"),
    ({"synthetic.bomb": {"subjects": 1}}, "synthetic.bomb: no data set 'bomb' is described under datasets"),
    ({"synthetic.sfew.subjects": 1}, "synthetic.sfew: sfew needs at least 2 subjects"),
])
def test_value_ranges_of_every_section_are_refused_before_any_work(over, message):
    with pytest.raises(ConfigError, match=message) as err:
        load_config("paper", over)
    _one_line(err)


def test_a_run_with_a_bad_synthetic_setting_writes_nothing_and_starts_no_ray(tmp_path, capsys):
    from partfer.cli import main
    store = tmp_path / "store"
    assert main(["run", "--config", "demo", "--set", "synthetic.jaffe.size=abc", "--out", str(store)]) == 2
    err = capsys.readouterr().err
    assert err == "partfer: error: synthetic.jaffe.size must be a whole number, not 'abc'\n"
    assert not store.exists()


def test_a_huge_bad_value_is_refused_in_a_short_line_that_keeps_both_ends(tmp_path, capsys):
    from partfer.cli import main
    from partfer.orchestrator.messages import shown
    value = "A" + "x" * 100_000 + "Z"
    store = tmp_path / "store"
    assert main(["run", "--config", "demo", "--set", f"train.selection={value}", "--out", str(store)]) == 2
    err = capsys.readouterr().err
    assert err == (f"partfer: error: train.selection must be one of evaluated_fold, heldout_subjects, last, "
                   f"not {shown(value)}\n")
    assert len(err) < 200 and "'Axxx" in err and "xxxZ'" in err and "[... 99,944 characters left out ...]" in err
    assert not store.exists()


def test_a_lower_layers_reason_that_quotes_a_huge_value_keeps_its_two_ends(tmp_path, capsys):
    # the model architecture quotes what it was given in full: the config error cuts the middle
    from partfer.cli import main
    assert main(["run", "--config", "demo", "--set", "model.widths=[" + "'q'," * 50_000 + "'end']",
                 "--out", str(tmp_path / "store")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and len(err) <= ConfigError.MAX_MESSAGE + 100, len(err)
    assert err.startswith("partfer: error: model: widths must be a list of whole numbers, got ['q', 'q'")
    assert "characters left out ...]" in err and err.endswith("'q', 'end']\n")
    assert str(ConfigError("x" * ConfigError.MAX_MESSAGE)) == "x" * ConfigError.MAX_MESSAGE


def test_the_shipped_configs_keep_their_run_ids():
    # the run id hashes identity_config (runner.run): neither the retired kernel switches nor the
    # measured projection rates may move it (these are the ids the configs had before both changed)
    from partfer.orchestrator.config import identity_config
    from partfer.orchestrator.storage.store import stable_hash
    ids = {name: stable_hash(identity_config(load_config(name)), 10) for name in ("demo", "paper", "synthetic")}
    # demo (and synthetic, which includes it) train in standardized landmark targets and batches of
    # 16: a different recipe, a different id; paper.yaml's landmark_targets: crop leaves its id alone
    assert ids == {"demo": "469ae827a4", "paper": "1c01aab7ae", "synthetic": "751d3ff19e"}
    moved = load_config("paper", {"projection.trainer_start_seconds": 30.0, "hardware": "cpu"})
    assert stable_hash(identity_config(moved), 10) == ids["paper"]
