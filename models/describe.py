"""The model-complexity report (paper Section IV-E and III-C1): our counts beside the paper's.

Everything is computed from networks actually built with the given architecture settings, so a
config change shows up here. See models.counts for why FLOPs and storage differ from the paper.
"""
from __future__ import annotations

from collections.abc import Sequence

from partfer.data_prep.ibug68 import ALL_REGIONS
from partfer.models.config import ArchConfig
from partfer.models.counts import BYTES_PER_FLOAT32, count_flops, count_parameters, storage_bytes
from partfer.models.extractor import FeatureExtractor, feature_map_sizes
from partfer.models.heads import LandmarkHead
from partfer.models.subnet import SubNetwork

# Figures stated in the paper (Sections III-C1 and IV-E), in the paper's units.
PAPER = {
    "extractor_params_millions": 0.29,
    "landmark_head_params_millions": {"nose": 0.019, "face": 0.025},
    "classifier_head_params_millions": 0.035,
    "subnetwork_params_millions": 0.33,
    "ensemble_params_millions": 1.65,
    "subnetwork_gflops": 0.555,
    "ensemble_gflops": 2.775,
    "conv_flops_fraction": 0.9998,
    "subnetwork_storage_mb": 6.3,
    "ensemble_storage_mb": 31.5,
}

NOTES = [
    "Parameters count BN running mean/variance (Keras 'total params'); they match the paper exactly.",
    "The paper's face landmark head (0.025M) is inconsistent with its own architecture: "
    "128*128+128 + 128*136+136 = 34,056 parameters.",
    "Storage: float32 = 4 bytes per parameter gives 1.32 MB per sub-network; the paper's 6.3 MB equals "
    "the five-model ensemble in MiB (1,647,480 * 4 B = 6.28 MiB), and its 31.5 MB counts the five models twice.",
]


def flops_note(arch: ArchConfig, image_size: int, gflops: float) -> str:
    """Why the sub-network's FLOPs differ from the paper's, naming the maps this architecture has
    (the pooling convention alone moves 0.641 G to 0.671 G at 160 px)."""
    k, s, p = arch.pool_kernel, arch.pool_stride, arch.pool_padding
    pools = "Keras 'same'" if p == "same" else ("unpadded" if p == 0 else f"padding-{p}")
    maps = "/".join(str(h) for h, _ in feature_map_sizes(image_size, image_size, arch)[:-1])
    return (f"FLOPs: literal formulas 7-9 on our network ('same' {arch.conv_kernel}x{arch.conv_kernel} convs, "
            f"{k}x{k}/{s} {pools} pools: maps {maps}) give ~{gflops:.3f} G per sub-network at {image_size} px; "
            "no convention we tried reproduces 0.555 exactly (closest: unpadded convs + 'same' pools, 0.550). "
            "See models/counts.py.")


MB = 1e6
MIB = 2**20


def describe(n_classes_list: Sequence[int] = (7, 8), image_size: int = 160, n_members: int = 5,
             **arch_kwargs) -> dict:
    """JSON-serialisable complexity report for sub-networks (extractor + classifier) and ensembles."""
    arch = ArchConfig(**arch_kwargs)
    f, h, act = arch.feature_dim, arch.head_hidden, arch.head_activation
    per_classes: dict[str, dict] = {}
    for n_classes in n_classes_list:
        net = SubNetwork.from_arch(n_classes, None, arch, seed=0)
        params = count_parameters(net)
        flops = count_flops(net, image_size)
        per_classes[str(n_classes)] = {
            "classifier_head_params": count_parameters(net.classifier),
            "subnetwork_params": params,
            "ensemble_params": n_members * params,
            "subnetwork_gflops": flops.total / 1e9,
            "ensemble_gflops": n_members * flops.total / 1e9,
            "flops_breakdown": flops.to_dict(),
            "conv_flops_fraction": flops.conv / flops.total,
            "subnetwork_storage_mb": storage_bytes(params) / MB,
            "subnetwork_storage_mib": storage_bytes(params) / MIB,
            "ensemble_storage_mb": n_members * storage_bytes(params) / MB,
            "ensemble_storage_mib": n_members * storage_bytes(params) / MIB,
        }
    landmark = {region: count_parameters(LandmarkHead(2 * (end - start), h, act, in_features=f))
                for region, (start, end) in ALL_REGIONS.items()}
    return {
        "image_size": image_size,
        "n_members": n_members,
        "bytes_per_parameter": BYTES_PER_FLOAT32,
        "architecture": arch.to_dict(),
        "extractor_params": count_parameters(FeatureExtractor.from_arch(arch)),
        "landmark_head_params": landmark,
        "landmark_head_outputs": {region: 2 * (end - start) for region, (start, end) in ALL_REGIONS.items()},
        "by_n_classes": per_classes,
        "paper": PAPER,
        "notes": NOTES[:2] + [flops_note(arch, image_size, flops.total / 1e9)] + NOTES[2:],
    }

