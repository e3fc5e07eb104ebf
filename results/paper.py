"""The paper's published numbers as data (Wadhawan & Gandhi, Tables I-III), for side-by-side comparison.

Keys are our data set names ("ckplus", "jaffe", "sfew"); columns follow Table I's order.
"""
from __future__ import annotations

from dataclasses import dataclass

from partfer.orchestrator.networks import NETWORKS

DISPLAY_NAMES: dict[str, str] = {"ckplus": "CK+", "jaffe": "JAFFE", "sfew": "SFEW"}

# Table I / III column order: the two 5-member ensembles, the EL parts alone, then the EL ensemble.
PART_ORDER: tuple[str, ...] = ("eyebrows", "eyes", "nose", "mouth", "jaw")
COLUMNS: tuple[str, ...] = ("Baseline", "FTL", "Eyebrows", "Eyes", "Nose", "Mouth", "Jaw", "EL")


def _row(*values: float) -> dict[str, float]:
    return dict(zip(COLUMNS, values, strict=True))


# Table I: accuracy (%) of each network trained and tested on one data set.
TABLE1: dict[str, dict[str, float]] = {
    "ckplus": _row(82.56, 95.87, 93.29, 93.96, 91.86, 95.16, 93.28, 97.31),
    "jaffe": _row(85.02, 92.42, 91.43, 87.30, 82.88, 92.36, 86.40, 97.14),
    "sfew": _row(36.47, 42.20, 40.60, 41.30, 36.70, 41.74, 40.82, 44.50),
}

# Table III: cross-data-set generalisation, (trained on, tested on) -> accuracy (%).
# SFEW -> SFEW is the SFEW validation set (Table I's SFEW row); CK+ is tested without contempt.
TABLE3: dict[tuple[str, str], dict[str, float]] = {
    ("sfew", "sfew"): TABLE1["sfew"],
    ("sfew", "ckplus"): _row(32.85, 41.31, 33.33, 35.49, 22.97, 37.72, 32.62, 47.53),
    ("sfew", "jaffe"): _row(16.90, 26.29, 22.54, 24.88, 18.78, 24.88, 21.60, 30.51),
}


# Test images each published accuracy is computed over (all folds together): every image of the
# protocol was scored (SFEW Val 194/436 = 44.50, SFEW -> JAFFE 65/213, SFEW -> CK+ without
# contempt 596/1,254 = 47.53).
TEST_IMAGES: dict[tuple[str, str], int] = {
    ("ckplus", "ckplus"): 1308,
    ("jaffe", "jaffe"): 213,
    ("sfew", "sfew"): 436,
    ("sfew", "ckplus"): 1254,
    ("sfew", "jaffe"): 213,
}


@dataclass(frozen=True)
class Benchmark:
    """Table II: the best prior result the paper compares its EL ensemble against."""
    accuracy: float           # %
    params_millions: float
    references: str


TABLE2: dict[str, Benchmark] = {
    "ckplus": Benchmark(96.80, 11.0, "[22]"),
    "jaffe": Benchmark(91.80, 2.0, "[18], [32]"),
    "sfew": Benchmark(48.19, 11.0, "[22]"),
}
EL_PARAMS_MILLIONS = 1.65

# The paper's protocol, used to tell whether a run is comparable with it.
PAPER_IMAGE_SIZE = 160
PAPER_MEMBERS = 5
PAPER_FOLDS: dict[str, int] = {"ckplus": 10, "jaffe": 10, "sfew": 1}


def display_name(dataset: str) -> str:
    """The paper's spelling of a data set name, or the key itself for data sets it does not use."""
    return DISPLAY_NAMES.get(dataset, dataset)


def column_name(network: str, member: str | None) -> str:
    """Table column of one system: an ensemble (member None), an EL part, or a Baseline/FTL member
    (orchestrator.networks names them; a network it does not know goes by its own name)."""
    spec = NETWORKS.get(network)
    if member is None:
        return spec.column if spec else network
    return spec.member_column(member) if spec else f"{network} {member}"


# Section V-B: how the mean absolute landmark error changed after fine-tuning (the paper gives
# no numbers, only these directions, measured on SFEW with the stage-1 landmark head kept).
LANDMARK_CHANGE: dict[str, str] = {
    "eyebrows": "slight increase",
    "eyes": "decreased",
    "nose": "larger increase",
    "mouth": "decreased",
    "jaw": "almost the same",
}


def split_name(dataset: str, protocol: str, role: str) -> str:
    """Table III's row labels: a hold-out set trains on its Train split and reports on Valid."""
    name = display_name(dataset)
    if protocol != "holdout":
        return name
    return f"{name} Train" if role == "train" else f"{name} Valid"

# Section IV-E reports the worst case: the CK+ models, whose classifier has 8 outputs.
COMPLEXITY_CLASSES = 8
