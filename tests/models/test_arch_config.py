"""ArchConfig.from_config: a run config's `model:` section as the network it trains, every setting
accounted for."""
import pytest

from partfer.models.config import CONFIG_KEYS, ArchConfig, ArchitectureError

# a model section as configs hold it (lists from YAML, "same" or an int for the pooling's padding)
MODEL = {"widths": [8, 16, 32, 64], "pool_kernel": 3, "pool_stride": 2, "pool_padding": 0,
         "bn_eps": 1e-5, "bn_momentum": 0.1, "head_hidden": 32, "head_activation": "relu"}


def test_a_model_section_is_the_network_it_names():
    arch = ArchConfig.from_config(MODEL)
    assert arch == ArchConfig(widths=(8, 16, 32, 64), pool_kernel=3, pool_stride=2, pool_padding=0,
                              bn_eps=1e-5, bn_momentum=0.1, head_hidden=32, head_activation="relu")
    assert ArchConfig.from_config({k: arch.to_dict()[k] for k in CONFIG_KEYS}) == arch


def test_the_paper_configs_model_section():
    from partfer.orchestrator.config import load_config
    arch = ArchConfig.from_config(load_config("paper")["model"])
    assert arch == ArchConfig(widths=(16, 32, 64, 128), pool_kernel=3, pool_stride=2, pool_padding="same",
                              bn_eps=1e-3, bn_momentum=0.01, head_hidden=128, head_activation="none")


def test_unknown_settings_are_refused_by_name():
    with pytest.raises(ArchitectureError, match=r"unknown settings \['dropout', 'pool_size'\]"):
        ArchConfig.from_config(dict(MODEL, pool_size=3, dropout=0.5))


def test_missing_settings_are_refused_by_name():
    model = dict(MODEL)
    del model["pool_padding"]
    with pytest.raises(ArchitectureError, match=r"missing settings \['pool_padding'\]"):
        ArchConfig.from_config(model)


def test_bad_values_are_the_architectures_errors():
    with pytest.raises(ArchitectureError, match="head_activation"):
        ArchConfig.from_config(dict(MODEL, head_activation="tanh"))
