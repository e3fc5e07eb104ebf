"""`--annotate` videos: H.264 ("avc1", what browsers play) where OpenCV can encode it, else
MPEG-4 Part 2 with a note on stderr saying browsers may not play it and how to get H.264. The
codec is read back from the written file. A real model directory (conftest)."""
from __future__ import annotations

from pathlib import Path

import cv2
from hostile_files import write_video

from partfer.cli import main
from partfer.orchestrator.inference.annotate import BROWSER_CODEC, encoder_opens

H264_TAGS = {"avc1", "h264", "H264"}          # what FFmpeg reports reading an H.264 stream back
MPEG4_PART2_TAGS = {"mp4v", "FMP4"}


def _fourcc(path: Path) -> str:
    cap = cv2.VideoCapture(str(path))
    try:
        code = int(cap.get(cv2.CAP_PROP_FOURCC))
    finally:
        cap.release()
    return "".join(chr((code >> (8 * k)) & 0xFF) for k in range(4))


def test_annotated_video_is_h264_or_says_how_to_get_it(untrained_model, tmp_path, capsys):
    clip = write_video(tmp_path / "clip.avi", 4, fourcc="MJPG")
    drawn = tmp_path / "drawn"
    assert main(["predict", "--model", str(untrained_model), "--device", "cpu", "--no-progress", str(clip),
                 "--annotate", str(drawn), "--out", str(tmp_path / "p.csv")]) == 0
    err = capsys.readouterr().err
    written = drawn / "clip.mp4"
    assert written.is_file()
    if encoder_opens(BROWSER_CODEC, ".mp4"):
        assert _fourcc(written) in H264_TAGS and "browsers may not play" not in err
    else:
        assert _fourcc(written) in MPEG4_PART2_TAGS
        notes = [line for line in err.splitlines() if "browsers may not play" in line]
        assert len(notes) == 1 and notes[0].startswith("partfer predict: note: annotated videos are mp4v")
        assert "libx264" in notes[0] and "H.264" in notes[0]
    assert "h264_v4l2m2m" not in err and "Failed to initialize VideoWriter" not in err   # the probe is quiet
