"""The iBUG 300-W 68-point layout: the paper's five parts and the mirror permutation.

These are facts about the landmark annotation, shared by the synthetic generator, the
augmentation (flips) and the networks (which points a part regresses).
"""
from __future__ import annotations

N_POINTS = 68

# Half-open index ranges, as in the paper's Fig. 4.
PARTS: dict[str, tuple[int, int]] = {
    "jaw": (0, 17),
    "eyebrows": (17, 27),
    "nose": (27, 36),
    "eyes": (36, 48),
    "mouth": (48, 68),
}
FULL_FACE = "face"
ALL_REGIONS: dict[str, tuple[int, int]] = {**PARTS, FULL_FACE: (0, N_POINTS)}

# Display order of the EL parts (Table I column order) and their plot colours (Fig. 4).
PART_ORDER = ("eyebrows", "eyes", "nose", "mouth", "jaw")
PART_COLOURS = {
    "eyebrows": "tab:blue", "eyes": "tab:green", "nose": "deepskyblue",
    "mouth": "tab:red", "jaw": "magenta",
}


def region_indices(region: str) -> list[int]:
    """Point indices of a part (or of the full face) in the 68-point layout."""
    if region not in ALL_REGIONS:
        raise KeyError(f"unknown landmark region {region!r}; known: {sorted(ALL_REGIONS)}")
    start, end = ALL_REGIONS[region]
    return list(range(start, end))


def _mirror_pairs() -> list[tuple[int, int]]:
    pairs = [(i, 16 - i) for i in range(8)]                       # jaw contour
    pairs += [(17 + i, 26 - i) for i in range(5)]                 # eyebrows
    pairs += [(31, 35), (32, 34)]                                 # nostrils
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]  # eyes
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]   # outer lip
    pairs += [(60, 64), (61, 63), (65, 67)]                       # inner lip
    return pairs


def flip_permutation() -> list[int]:
    """perm[i] = index of the point that lands on i after a horizontal flip.

    A flipped face's left eye is the original's right eye: after mirroring x, the targets
    must also be re-indexed, or the network is taught to put the right eye on the left.
    """
    perm = list(range(N_POINTS))
    for a, b in _mirror_pairs():
        perm[a], perm[b] = b, a
    return perm


FLIP_PERMUTATION: list[int] = flip_permutation()
