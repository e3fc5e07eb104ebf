"""Walking prediction inputs and streaming video frames (real files written with OpenCV), hostile
ones included: names that are not UTF-8, FIFOs, images too large to decode, damaged videos."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hostile_files import damage_middle, fifo, non_utf8, tree_state, write_big_png, write_png, write_video

from partfer.orchestrator.inference import media
from partfer.orchestrator.inference.media import colour_image, estimated_frames, expand_inputs, frames


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


_READ_IN_A_CHILD = """
import json, sys
from partfer.orchestrator.inference.media import colour_image, expand_inputs, frames
out = []
for source in expand_inputs([sys.argv[1]]):
    got = list(frames(source))
    out.append([source.kind, [(f.index, None if f.gray is None else f.gray.shape, f.error) for f in got],
                None if source.kind != "image" else colour_image(source).shape])
print(json.dumps(out))
"""


def test_images_and_videos_whose_names_are_not_utf8_are_read(tmp_path):
    """In a child process: OpenCV, given such a path, crashed the process (SIGSEGV)."""
    write_png(non_utf8(tmp_path, b"caf\xe9_\xff.png"), np.full((20, 30), 5, np.uint8))
    write_video(non_utf8(tmp_path, b"clip\xff.avi"), 5, fourcc="MJPG")
    run = subprocess.run([sys.executable, "-c", _READ_IN_A_CHILD, str(tmp_path)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    image, video = json.loads(run.stdout)
    assert image == ["image", [[None, [20, 30], ""]], [20, 30, 3]]
    assert video[0] == "video" and [f[0] for f in video[1]] == [0, 1, 2, 3, 4]
    assert all(f[1] == [64, 64] and f[2] == "" for f in video[1])


def test_a_damaged_video_gives_a_row_for_every_frame_its_container_declares(tmp_path, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", 20)
    damage_middle(video)
    (source,) = expand_inputs([video])
    got = list(frames(source))
    assert [f.index for f in got] == list(range(20))              # none vanished without a row
    lost = [f for f in got if f.gray is None]
    assert lost and lost[-1].index == 19
    first = lost[0].index
    assert lost[0].error == (f"frame {first} could not be decoded: the stream ended after {first} of the 20 "
                             f"frames its container declares")
    assert [f.index for f in frames(source, every=3)] == [0, 3, 6, 9, 12, 15, 18]
    assert estimated_frames(source, 3) == 7
    monkeypatch.setattr(media, "MAX_LOST_FRAME_ROWS", 2)           # a header may claim billions
    capped = [f for f in frames(source) if f.gray is None]
    assert [f.index for f in capped] == [first, first + 1, first + 2]
    assert capped[-1].error.startswith(f"frames {first + 2}..19 ({18 - first} kept frames) could not be decoded")


def test_fifos_and_images_too_large_are_error_rows_and_the_folder_is_left_as_it_was(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    write_big_png(folder / "big.png", 10_000, 6_000)
    with fifo(folder / "pipe.png"), fifo(folder / "pipe.mp4"):
        before = tree_state(folder)
        sources = expand_inputs([folder, folder / "pipe.png"])
        got = {s.name: [f.error for f in frames(s)] for s in sources[:3]}
        named = list(frames(sources[3]))
        drawn = [colour_image(s) for s in sources if s.kind == "image"]
        assert tree_state(folder) == before
    assert got == {str(folder / "big.png"): ["image too large: big.png is 10000x6000 (60.0 megapixels; "
                                             "the cap is 50)"],
                   str(folder / "pipe.mp4"): ["not a regular file: pipe.mp4 is a FIFO (named pipe)"],
                   str(folder / "pipe.png"): ["not a regular file: pipe.png is a FIFO (named pipe)"]}
    assert [(f.gray, f.error) for f in named] == [(None, "not a regular file: pipe.png is a FIFO (named pipe)")]
    assert drawn == [None, None, None]
