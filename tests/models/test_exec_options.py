"""Execution options (models.options.ExecOptions): fixed when a network is built, reaching every
block, and refused by name when a value is not one the blocks know."""
import pytest
import torch

from partfer.models.extractor import ConvBlock, FeatureExtractor
from partfer.models.options import CHOICES, ExecOptions, ExecOptionsError
from partfer.models.packed import PackedNetwork
from partfer.models.subnet import SubNetwork

WIDTHS = (4, 8, 8, 8)
CHOSEN = ExecOptions(grey="repeat", split="on", fuse="off", interleave="copy")


def _blocks(net: torch.nn.Module) -> list[ConvBlock]:
    blocks = [m for m in net.modules() if isinstance(m, ConvBlock)]
    assert len(blocks) == len(WIDTHS)
    return blocks


def test_the_defaults_are_the_blocks_documented_ones():
    assert ExecOptions() == ExecOptions(grey="auto", split="auto", fuse="auto", interleave="auto")
    assert all(b.options == ExecOptions() for b in _blocks(FeatureExtractor(WIDTHS)))


def test_options_reach_every_block_of_every_network():
    nets = {
        "extractor": FeatureExtractor(WIDTHS, n_models=2, options=CHOSEN),
        "subnet": SubNetwork(7, None, widths=WIDTHS, seed=0, options=CHOSEN),
        "packed": PackedNetwork(2, 7, [4, 6], widths=WIDTHS, seeds=[0, 1], options=CHOSEN),
    }
    nets["packed_of_subnets"] = PackedNetwork.from_subnetworks(
        [SubNetwork(7, None, widths=WIDTHS, seed=s) for s in (0, 1)], options=CHOSEN)
    nets["subnet_of_pack"] = nets["packed"].subnetwork(1)
    for name, net in nets.items():
        assert net.options is CHOSEN, name
        assert all(block.options is CHOSEN for block in _blocks(net)), name


def test_options_cannot_be_changed_after_construction():
    net = PackedNetwork(2, 7, None, widths=WIDTHS, seeds=[0, 1])
    with pytest.raises(AttributeError):
        net.extractor.blocks[0].options = CHOSEN
    with pytest.raises(AttributeError):
        net.options = CHOSEN
    with pytest.raises(AttributeError):        # frozen
        net.options.fuse = "off"
    assert all(block.options == ExecOptions() for block in _blocks(net))


@pytest.mark.parametrize("field", sorted(CHOICES))
def test_a_wrong_value_is_refused_with_its_name(field):
    with pytest.raises(ExecOptionsError, match=rf"execution option {field} must be one of .*got 'sideways'"):
        ExecOptions(**{field: "sideways"})
    for value in CHOICES[field]:
        assert getattr(ExecOptions(**{field: value}), field) == value


def test_options_must_be_an_exec_options():
    with pytest.raises(TypeError, match="options must be an ExecOptions, got dict"):
        FeatureExtractor(WIDTHS, options={"fuse": "off"})
