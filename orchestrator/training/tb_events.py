"""Scalars appended to a TensorBoard event file, synchronously and without a writer thread.

A run trains hundreds of models; a SummaryWriter per model would hold a file and a thread each
for the whole run. Here every call opens the directory's one event file, appends one Event
record (TFRecord framing and CRCs by tensorboard's own RecordWriter) and closes it, so
`tensorboard --logdir <run>` sees each epoch as soon as it is written.
"""
from __future__ import annotations

import math
import socket
import time
from pathlib import Path

EVENTS_PREFIX = "events.out.tfevents."


def _event_file(directory: Path) -> tuple[Path, bool]:
    """The directory's event file (the newest, when several exist) and whether it is new."""
    existing = sorted(directory.glob(EVENTS_PREFIX + "*"))
    if existing:
        return existing[-1], False
    return directory / f"{EVENTS_PREFIX}{int(time.time())}.{socket.gethostname()}.partfer", True


def append_scalars(directory: Path | str, step: int, scalars: dict[str, float | None],
                   wall_time: float | None = None) -> Path | None:
    """Append one event holding every finite scalar (tag -> value) at `step`; returns the file,
    or None when no value was finite (nothing written)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    values = [summary_pb2.Summary.Value(tag=tag, simple_value=float(value))
              for tag, value in scalars.items() if value is not None and math.isfinite(value)]
    if not values:
        return None
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path, new = _event_file(directory)
    stamp = time.time() if wall_time is None else wall_time
    with open(path, "ab") as handle:
        writer = RecordWriter(handle)
        if new:
            writer.write(event_pb2.Event(wall_time=stamp, file_version="brain.Event:2").SerializeToString())
        writer.write(event_pb2.Event(wall_time=stamp, step=int(step),
                                     summary=summary_pb2.Summary(value=values)).SerializeToString())
    return path
