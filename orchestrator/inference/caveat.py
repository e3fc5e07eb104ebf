"""What an exported model's origin says about trusting its predictions.

`partfer export` copies the run's `synthetic`, `shrunk` and `shrunk_reasons` settings into
model.json's `run` section, and each member's held-out `test_acc`. A model trained on the demo's
drawn faces, or on a budget cut below the paper's, predicts little about real faces: predict says so
once on stderr and tags every row with a short code (the `model_caveat` column). A model.json from
before these fields were written has no caveat.
"""
from __future__ import annotations

from dataclasses import dataclass

from partfer.orchestrator.storage.model_dir import ModelSpec

SYNTHETIC, SHRUNK = "synthetic", "shrunk"
SYNTHETIC_REASON_PREFIX = "synthetic data"     # how the runner words the synthetic shrunk reason


@dataclass(frozen=True)
class Caveat:
    code: str       # "synthetic", "shrunk" or "" (none): the value of every row's model_caveat
    text: str       # one sentence for stderr; "" when there is nothing to warn about


def _synthetic_sets(value) -> list[str]:
    """The synthetic data sets a run recorded: a list of names, or (older runs) a flag."""
    if isinstance(value, list):
        return [str(v) for v in value]
    return ["?"] if value is True else []


def accuracy_note(spec: ModelSpec) -> str:
    """The members' recorded held-out test accuracy ('' when none is recorded: a final model)."""
    accs = [m.test_acc for m in spec.members if m.test_acc is not None]
    if not accs:
        return ""
    mean = sum(accs) / len(accs)
    if len(accs) == 1:
        return f"its held-out test accuracy was {mean:.3f}"
    return (f"its members' held-out test accuracy was {mean:.3f} on average "
            f"({min(accs):.3f}-{max(accs):.3f} over {len(accs)})")


def model_caveat(spec: ModelSpec) -> Caveat:
    """The caveat of a model from its model.json (no caveat when the run recorded neither flag)."""
    run = spec.run if isinstance(spec.run, dict) else {}
    synthetic = _synthetic_sets(run.get("synthetic"))
    reasons = [str(r) for r in run.get("shrunk_reasons") or [] if not str(r).startswith(SYNTHETIC_REASON_PREFIX)]
    shrunk = bool(run.get("shrunk")) or bool(reasons)
    if not synthetic and not shrunk:
        return Caveat("", "")
    parts = []
    if synthetic:
        known = [s for s in synthetic if s != "?"]
        parts.append(f"synthetic data ({', '.join(known)})" if known else "synthetic data")
    if shrunk:
        parts.append(f"a shrunk budget ({'; '.join(reasons)})" if reasons else "a shrunk budget")
    text = f"this model was trained on {' and '.join(parts)}, not the paper's setting"
    accuracy = accuracy_note(spec)
    if accuracy:
        text += f"; {accuracy}"
    text += ": do not read its predictions as the paper's model's"
    return Caveat(SYNTHETIC if synthetic else SHRUNK, text)
