"""The paper's ensemble policy (Eq. 4): sum the members' softmax vectors, take the argmax.

Summing probabilities lets a confident member outvote several unsure ones, which a majority
vote would not. A sample is ensembled only when every member predicted it: an ensemble of
fewer members is a different model, so a gap is reported instead of silently computed over.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

GROUP = ["dataset", "network", "fold", "eval_dataset"]
ENSEMBLE_COLUMNS = GROUP + ["sample_id", "label", "probs"]
GAP_COLUMNS = GROUP + ["missing_members", "n_dropped", "n_ensembled"]


def sum_softmax(member_probs: np.ndarray) -> np.ndarray:
    """(members, samples, classes) -> (samples, classes): the summed softmax vectors."""
    member_probs = np.asarray(member_probs, dtype=np.float64)
    if member_probs.ndim != 3:
        raise ValueError(f"member_probs must be (members, samples, classes), got {member_probs.shape}")
    return member_probs.sum(axis=0)


def ensemble_argmax(member_probs: np.ndarray) -> np.ndarray:
    """Class index per sample under the sum-of-softmax policy."""
    return sum_softmax(member_probs).argmax(axis=1)


def _ensemble_group(frame: pd.DataFrame, members: Sequence[str], where: str
                    ) -> tuple[pd.DataFrame, list[dict]]:
    """Ensemble one (dataset, network, fold, eval_dataset) group; gaps as rows of counts."""
    samples = sorted(frame["sample_id"].unique())
    index = {sid: i for i, sid in enumerate(samples)}
    member_pos = {m: j for j, m in enumerate(members)}
    n_classes = len(frame["probs"].iloc[0])
    stack = np.zeros((len(members), len(samples), n_classes))
    present = np.zeros((len(members), len(samples)), dtype=bool)
    labels: dict[str, str] = {}
    for member, sid, label, probs in frame[["member", "sample_id", "label", "probs"]].itertuples(
            index=False):
        if member not in member_pos:
            raise ValueError(f"{where}: member {member!r} is not one of the plan's {list(members)}")
        if labels.setdefault(sid, label) != label:
            raise ValueError(f"{where}: sample {sid!r} has label {labels[sid]!r} and {label!r} "
                             "in different members' predictions")
        stack[member_pos[member], index[sid]] = probs
        present[member_pos[member], index[sid]] = True
    complete = present.all(axis=0)
    summed = sum_softmax(stack[:, complete])
    kept = [sid for sid, ok in zip(samples, complete) if ok]
    ensembled = pd.DataFrame({"sample_id": kept, "label": [labels[s] for s in kept],
                              "probs": list(summed)})
    # One gap row per distinct set of absent members, with how many samples it cost.
    gaps: dict[tuple[str, ...], int] = {}
    for col in np.flatnonzero(~complete):
        absent = tuple(m for m, j in member_pos.items() if not present[j, col])
        gaps[absent] = gaps.get(absent, 0) + 1
    gap_rows = [{"missing_members": ", ".join(absent), "n_dropped": n,
                 "n_ensembled": int(complete.sum())} for absent, n in sorted(gaps.items())]
    return ensembled, gap_rows


def ensemble_predictions(predictions: pd.DataFrame,
                         members: Mapping[tuple[str, str], Sequence[str]],
                         ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ensemble every (dataset, network, fold, eval_dataset) group of member predictions.

    `members[(dataset, network)]` lists the members the ensemble needs (from the plan).
    Returns (ensembled rows: ENSEMBLE_COLUMNS with summed probs, gaps: GAP_COLUMNS), both
    sorted so that rebuilding gives identical output.
    """
    out: list[pd.DataFrame] = []
    gap_rows: list[dict] = []
    if len(predictions):
        for key, frame in predictions.groupby(GROUP, sort=True):
            dataset, network = key[0], key[1]
            if (dataset, network) not in members:
                raise ValueError(f"no member list for network {network!r} on {dataset!r}")
            where = "{} {} fold {} on {}".format(*key)
            ensembled, gaps = _ensemble_group(frame, list(members[(dataset, network)]), where)
            for name, value in zip(GROUP, key):
                ensembled[name] = value
            out.append(ensembled[ENSEMBLE_COLUMNS])
            gap_rows += [dict(zip(GROUP, key)) | row for row in gaps]
    result = (pd.concat(out, ignore_index=True) if out
              else pd.DataFrame({c: pd.Series(dtype=object) for c in ENSEMBLE_COLUMNS}))
    gaps_frame = pd.DataFrame(gap_rows, columns=GAP_COLUMNS)
    return result, gaps_frame
