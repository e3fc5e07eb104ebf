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
