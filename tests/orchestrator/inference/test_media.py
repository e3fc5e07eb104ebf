"""Walking prediction inputs and streaming video frames (real files written with OpenCV)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from partfer.orchestrator.inference.media import estimated_frames, expand_inputs, frames


def _video(path: Path, n: int, size: int = 48) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (size, size))
    for i in range(n):
        writer.write(np.full((size, size, 3), 20 * i, np.uint8))   # frame i has brightness 20 i
    writer.release()
    return path


def test_folders_are_walked_sorted_and_hidden_files_skipped(tmp_path):
    (tmp_path / "b" / ".cache").mkdir(parents=True)
    for name in ("b/z.PNG", "a.jpg", "b/.hidden.png", "b/.cache/x.png", "readme.md"):
        cv2.imwrite(str(tmp_path / name), np.zeros((8, 8), np.uint8)) if name.lower().endswith(("png", "jpg")) \
            else (tmp_path / name).write_text("text")
    _video(tmp_path / "b" / "clip.AVI", 2)
    sources = expand_inputs([tmp_path, tmp_path / "missing.png", tmp_path / "readme.md", np.zeros((4, 4))])
    assert [(Path(s.name).name, s.kind) for s in sources] == [
        ("a.jpg", "image"), ("clip.AVI", "video"), ("z.PNG", "image"), ("readme.md", "invalid"),   # b/ < readme
        ("missing.png", "invalid"), ("readme.md", "image"), ("array:3", "array")]
    assert "not an image or video file (.md)" in sources[3].reason
    assert sources[4].reason == "no such file or folder"


def test_video_frames_stream_every_nth(tmp_path):
    video = _video(tmp_path / "v.avi", 10)
    (source,) = expand_inputs([video])
    got = list(frames(source, every=3))
    assert [f.index for f in got] == [0, 3, 6, 9]
    assert all(f.gray.shape == (48, 48) and f.gray.dtype == np.uint8 for f in got)
    assert [round(float(f.gray.mean()) / 20) for f in got] == [0, 3, 6, 9]   # the right frames decoded
    assert estimated_frames(source, 3) == 4 and estimated_frames(source, 1) == 10
    with pytest.raises(ValueError, match="every"):
        next(frames(source, every=0))


def test_unreadable_inputs_become_frames_with_reasons(tmp_path):
    (tmp_path / "bad.avi").write_bytes(b"not a video at all")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    sources = expand_inputs([tmp_path / "bad.avi", tmp_path / "bad.png", np.zeros((4, 4, 5), np.uint8)])
    got = [list(frames(s)) for s in sources]
    assert [len(g) for g in got] == [1, 1, 1]
    assert all(g[0].gray is None for g in got)
    assert "unreadable video" in got[0][0].error
    assert "unreadable image" in got[1][0].error
    assert "channel count 5" in got[2][0].error


def test_arrays_are_converted_with_their_channel_order():
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 255                                                     # pure red in RGB order
    (source,) = expand_inputs([rgb])
    as_rgb = next(frames(source, channel_order="rgb")).gray
    as_bgr = next(frames(source, channel_order="bgr")).gray
    assert as_rgb[0, 0] == 76 and as_bgr[0, 0] == 29                      # ITU-R 601 weights of red vs blue
