"""One expression vocabulary for every data set, so cross-data-set tests can match classes."""
from __future__ import annotations

# Canonical order (the paper's Classes list, Section III-D2); a data set uses the subset it has.
CANONICAL = ("anger", "contempt", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

_ALIASES = {
    "an": "anger", "ang": "anger", "angry": "anger", "anger": "anger",
    "co": "contempt", "contempt": "contempt",
    "di": "disgust", "disgust": "disgust", "disgusted": "disgust",
    "fe": "fear", "fear": "fear", "fearful": "fear", "afraid": "fear",
    "ha": "happiness", "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "ne": "neutral", "neutral": "neutral",
    "sa": "sadness", "sad": "sadness", "sadness": "sadness",
    "su": "surprise", "surprise": "surprise", "surprised": "surprise",
}


def normalise(name: str) -> str | None:
    """Canonical label for a data set's class name, or None when it is not an expression we know."""
    return _ALIASES.get(name.strip().lower())


def class_list(labels) -> list[str]:
    """The classes present, in canonical order (a class absent from a data set stays absent)."""
    present = set(labels)
    unknown = present - set(CANONICAL)
    if unknown:
        raise ValueError(f"labels outside the vocabulary: {sorted(unknown)}")
    return [c for c in CANONICAL if c in present]
