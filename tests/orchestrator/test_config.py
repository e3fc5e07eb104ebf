import pytest

from partfer.orchestrator.config import ConfigError, epochs_for, load_config


def test_demo_includes_paper_and_overrides_win():
    cfg = load_config("demo", {"train.patience": 3, "image_size": 32})
    assert cfg["name"] == "demo"
    assert cfg["train"]["patience"] == 3 and cfg["image_size"] == 32
    assert cfg["train"]["lr"]["finetune"] == 1e-4          # inherited from paper.yaml
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
    ({"train.fused_grey_conv": 1}, "train.fused_grey_conv must be true or false"),
    ({"train.fused_augment": "auto"}, "train.fused_augment must be true or false"),
    ({"train.cuda_graphs": "on"}, "train.cuda_graphs must be true or false"),
    ({"train.triton_conv": "auto"}, "train.triton_conv must be true or false"),
    ({"train.cuda_graphs": True, "train.compile": "reduce-overhead"}, "choose one"),
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
    assert (tr["fused_bn"], tr["fused_augment"], tr["fused_grey_conv"], tr["cuda_graphs"], tr["triton_conv"]) == (
        True, True, False, False, False)
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
    assert cfg["train"]["pack_size_cpu"] == 10                                          # demo.yaml's own


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
