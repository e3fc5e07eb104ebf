"""Exact parameter counts (paper facts), FLOPs by the literal formulas, and the describe() report."""
from __future__ import annotations

import json

import pytest

from partfer.models.counts import count_flops, count_parameters, storage_bytes
from partfer.models.describe import PAPER, describe
from partfer.models.extractor import FeatureExtractor
from partfer.models.heads import LandmarkHead
from partfer.models.packed import PackedNetwork
from partfer.models.subnet import SubNetwork


def test_exact_parameter_counts():
    assert count_parameters(FeatureExtractor()) == 295_440
    assert count_parameters(SubNetwork(7, None, seed=0)) == 329_367
    assert count_parameters(SubNetwork(8, None, seed=0)) == 329_496
    assert 5 * count_parameters(SubNetwork(7, None, seed=0)) == 1_646_835
    assert 5 * count_parameters(SubNetwork(8, None, seed=0)) == 1_647_480
    # The packed network of five holds exactly five models' worth (no padding without landmarks).
    assert count_parameters(PackedNetwork(5, 8, None, seeds=[0] * 5)) == 1_647_480
    assert count_parameters(LandmarkHead(18)) == 18_834      # paper: 0.019M for the nose
    assert count_parameters(LandmarkHead(136)) == 34_056


def _literal_flops(size: int, n_classes: int) -> float:
    """Formulas 7-9 written out by hand for 3x3 'same' convs and 3x3/2 unpadded pools."""
    total, cin = 0.0, 3
    for width in (16, 32, 64, 128):
        total += 2 * cin * 9 * width * size * size + 2 * width * 9 * width * size * size   # two convs
        total += (size / 2) * (size / 2) * width                                          # max-pool
        size = (size - 3) // 2 + 1
        cin = width
    return total + 2 * (128 * 128 + 128 * 128 + 128 * n_classes)


@pytest.mark.parametrize("size", [32, 160])
def test_flops_follow_the_literal_formulas(size):
    flops = count_flops(SubNetwork(8, None, seed=0), size)
    assert flops.total == pytest.approx(_literal_flops(size, 8), rel=1e-12)
    assert flops.dense == 2 * (128 * 128 * 2 + 128 * 8)


def test_flops_at_160_against_the_paper():
    flops = count_flops(SubNetwork(8, None, seed=0), 160)
    assert flops.total / 1e9 == pytest.approx(0.6408, abs=1e-4)     # ours (see models/counts.py)
    assert flops.conv / flops.total > 0.999                          # paper: 99.98 % in the convs


def test_storage():
    assert storage_bytes(329_496) == 1_317_984
    # The paper's "6.3 MB" is the five-model ensemble in MiB.
    assert storage_bytes(1_647_480) / 2**20 == pytest.approx(6.28, abs=0.01)


def test_describe_is_json_and_carries_paper_numbers():
    report = describe(n_classes_list=(7, 8), image_size=160)
    text = json.dumps(report)
    assert json.loads(text) == report
    assert report["extractor_params"] == 295_440
    assert report["by_n_classes"]["7"]["subnetwork_params"] == 329_367
    assert report["by_n_classes"]["8"]["ensemble_params"] == 1_647_480
    assert report["by_n_classes"]["8"]["subnetwork_storage_mb"] == pytest.approx(1.318, abs=1e-3)
    assert report["landmark_head_params"]["nose"] == 18_834
    assert report["landmark_head_outputs"] == {"jaw": 34, "eyebrows": 20, "nose": 18, "eyes": 24,
                                               "mouth": 40, "face": 136}
    assert report["paper"] == PAPER
    assert report["paper"]["subnetwork_gflops"] == 0.555 and report["paper"]["subnetwork_storage_mb"] == 6.3
    e8 = report["by_n_classes"]["8"]
    assert e8["ensemble_gflops"] == pytest.approx(5 * e8["subnetwork_gflops"])


def test_describe_follows_architecture_settings():
    small = describe(n_classes_list=(7,), image_size=48, widths=(8, 16, 32, 64), head_hidden=32)
    assert small["extractor_params"] == count_parameters(FeatureExtractor(widths=(8, 16, 32, 64)))
    assert small["by_n_classes"]["7"]["subnetwork_params"] == count_parameters(
        SubNetwork(7, None, widths=(8, 16, 32, 64), head_hidden=32, seed=0))
