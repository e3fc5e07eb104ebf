"""CK+ in its official layout: image sequences, an Emotion file per labelled sequence, AAM points.

    cohn-kanade-images/S005/001/S005_001_00000001.png      frames, onset (neutral) to peak
    Emotion/S005/001/S005_001_00000011_emotion.txt          one number: 0-7 (only 327 sequences)
    Landmarks/S005/001/S005_001_00000001_landmarks.txt      68 "x y" lines per frame

The paper's protocol (Section II): only sequences with an Emotion file count; of each, the FIRST
frame is neutral and the LAST THREE carry the sequence's label (327 sequences -> 1,308 images,
8 classes). Unlabelled or unusable sequences become one reject each (the sequence folder), so
rejects.csv accounts for them; frames between the first and the last three are not part of the
protocol and are only counted in a note.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from partfer.data_prep.errors import DatasetRootError, RejectError
from partfer.data_prep.readers.base import (
    BROKEN_LINK, ReadResult, Record, Reject, is_broken_link, is_image_file, list_files, register_reader, rel,
    unreadable_folder,
)

IMAGES_DIR, EMOTION_DIR, LANDMARKS_DIR = "cohn-kanade-images", "Emotion", "Landmarks"
# The Emotion files' codes, in canonical names.
EMOTIONS = ("neutral", "anger", "contempt", "disgust", "fear", "happiness", "sadness", "surprise")
PEAK_FRAMES = 3                        # the last three frames carry the label
MIN_FRAMES = 1 + PEAK_FRAMES
FRAME_NAME = re.compile(r"^(?P<subject>S\d+)_(?P<sequence>\d+)_(?P<frame>\d+)$")
EMOTION_NAME = re.compile(r"^(?P<subject>S\d+)_(?P<sequence>\d+)_(?P<frame>\d+)_emotion\.txt$")
UNLABELLED = "no Emotion file: sequence not labelled"


@register_reader("ckplus")
def read_ckplus(root: Path) -> ReadResult:
    folders, rejects = top_folders(root)
    emotion_files, emotion_rejects = list_emotion_files(root, folders[EMOTION_DIR])
    rejects += emotion_rejects
    records: list[Record] = []
    n_between = n_unlabelled = 0
    peak_mismatch: list[str] = []
    sequences: set[tuple[str, str]] = set()
    for sequence_dir in sequence_folders(root, folders[IMAGES_DIR], rejects):
        subject, sequence = sequence_dir.parent.name, sequence_dir.name
        sequences.add((subject, sequence))
        frames = list_frames(root, sequence_dir, rejects)
        where = rel(sequence_dir, root)
        found = emotion_files.get((subject, sequence), [])
        n_unlabelled += not found
        try:
            label = sequence_label(found, len(frames), root)
        except RejectError as err:
            rejects.append(Reject(where, str(err)))
            continue
        if int(EMOTION_NAME.match(found[0].name)["frame"]) != frames[-1][0]:
            peak_mismatch.append(where)
        chosen = [(frames[0][1], "neutral")] + [(path, label) for _, path in frames[-PEAK_FRAMES:]]
        n_between += len(frames) - MIN_FRAMES
        for path, frame_label in chosen:
            records.append(Record(
                path=str(path), rel_path=rel(path, root), label=frame_label, subject=subject,
                group=f"{subject}/{sequence}", split="all",
                landmarks_path=landmarks_path(folders[LANDMARKS_DIR], subject, sequence, path.stem),
            ))
    for key, paths in sorted(emotion_files.items()):
        if key not in sequences:
            rejects += [Reject(rel(p, root), "Emotion file without an image sequence") for p in paths]
    notes = protocol_notes(n_unlabelled, n_between, peak_mismatch, folders[LANDMARKS_DIR] is None)
    return ReadResult(records, rejects, notes)


def top_folders(root: Path) -> tuple[dict[str, Path | None], list[Reject]]:
    """The three CK+ folders (names matched case-insensitively) and a reject per other entry.

    Without images or Emotion labels there is no CK+ protocol at all: a whole-run error.
    """
    wanted = {name.lower(): name for name in (IMAGES_DIR, EMOTION_DIR, LANDMARKS_DIR)}
    found: dict[str, Path | None] = dict.fromkeys(wanted.values())
    rejects = []
    for entry in sorted(root.iterdir()):
        name = wanted.get(entry.name.lower())
        if name is not None and entry.is_dir() and found[name] is None:
            found[name] = entry
        else:
            rejects.append(Reject(rel(entry, root), f"not part of the CK+ layout (only {IMAGES_DIR}/, "
                                                    f"{EMOTION_DIR}/ and {LANDMARKS_DIR}/ are read)"))
    for name, what in ((IMAGES_DIR, "image sequences"), (EMOTION_DIR, "labels (Emotion_labels.zip)")):
        if found[name] is None:
            raise DatasetRootError(f"no {name}/ folder in {root}: the CK+ layout needs its {what}")
    return found, rejects


def list_emotion_files(root: Path, emotion_dir: Path) -> tuple[dict[tuple[str, str], list[Path]], list[Reject]]:
    """(subject, sequence) -> its Emotion files (one, normally); other files as rejects."""
    by_sequence: dict[tuple[str, str], list[Path]] = {}
    files, rejects = list_files(emotion_dir, root)
    for path in files:
        parts = path.relative_to(emotion_dir).parts
        match = EMOTION_NAME.match(path.name)
        if len(parts) != 3 or match is None:
            rejects.append(Reject(rel(path, root), "not an Emotion file (Emotion/SXXX/NNN/SXXX_NNN_FFFFFFFF_emotion.txt)"))
        elif (match["subject"], match["sequence"]) != parts[:2]:
            rejects.append(Reject(rel(path, root), f"file name does not match its folder {parts[0]}/{parts[1]}"))
        else:
            by_sequence.setdefault(parts[:2], []).append(path)
    return by_sequence, rejects


def sequence_folders(root: Path, images_dir: Path, rejects: list[Reject]) -> list[Path]:
    """Every images/<subject>/<sequence>/ folder; anything else at those levels is a reject."""
    folders = []
    for subject_dir in listed(images_dir, root, rejects):
        if not subject_dir.is_dir():
            rejects.append(Reject(rel(subject_dir, root), misplaced(subject_dir)))
            continue
        for sequence_dir in listed(subject_dir, root, rejects):
            if sequence_dir.is_dir():
                folders.append(sequence_dir)
            else:
                rejects.append(Reject(rel(sequence_dir, root), misplaced(sequence_dir)))
    return folders


def listed(folder: Path, root: Path, rejects: list[Reject]) -> list[Path]:
    """The folder's entries, sorted; none and a reject naming it when it cannot be listed."""
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries)
    except OSError as err:
        rejects.append(Reject(rel(folder, root), unreadable_folder(err)))
        return []


def misplaced(path: Path) -> str:
    return BROKEN_LINK if is_broken_link(path) else "not inside a subject/sequence folder"


def list_frames(root: Path, sequence_dir: Path, rejects: list[Reject]) -> list[tuple[int, Path]]:
    """(frame number, path) of the sequence's frames in order; misnamed or stray files are rejects."""
    subject, sequence = sequence_dir.parent.name, sequence_dir.name
    frames: dict[int, Path] = {}
    files, unusable = list_files(sequence_dir, root)
    rejects += unusable
    for path in files:
        where = rel(path, root)
        match = FRAME_NAME.match(path.stem)
        if path.parent != sequence_dir:
            rejects.append(Reject(where, "not directly inside a sequence folder"))
        elif not is_image_file(path):
            rejects.append(Reject(where, "not an image file"))
        elif match is None:
            rejects.append(Reject(where, "file name does not follow SXXX_NNN_FFFFFFFF (e.g. S005_001_00000001.png)"))
        elif (match["subject"], match["sequence"]) != (subject, sequence):
            rejects.append(Reject(where, f"file name does not match its folder {subject}/{sequence}"))
        elif int(match["frame"]) in frames:
            rejects.append(Reject(where, f"duplicate frame {int(match['frame'])} "
                                         f"(also {frames[int(match['frame'])].name})"))
        else:
            frames[int(match["frame"])] = path
    return sorted(frames.items())


def sequence_label(emotion_files: list[Path], n_frames: int, root: Path) -> str:
    """The label of a sequence with these Emotion files and usable frames; RejectError(reason)
    when the protocol cannot use it."""
    if not emotion_files:
        raise RejectError(f"{UNLABELLED} ({n_frames} frames)")
    if len(emotion_files) > 1:     # which label holds is unknowable
        raise RejectError("more than one Emotion file: " + ", ".join(p.name for p in emotion_files))
    try:
        label = parse_emotion(emotion_files[0])
    except RejectError as err:
        raise RejectError(f"{err}: {rel(emotion_files[0], root)}") from None
    if n_frames < MIN_FRAMES:
        raise RejectError(f"labelled sequence has {n_frames} usable frames; the protocol needs at "
                          f"least {MIN_FRAMES} (first + last {PEAK_FRAMES})")
    return label


def parse_emotion(path: Path) -> str:
    """The canonical label of an Emotion file ("   3.0000000e+00"); RejectError(reason) when unusable."""
    try:
        tokens = path.read_text().split()
    except (OSError, UnicodeDecodeError) as err:
        raise RejectError(f"unreadable Emotion file ({type(err).__name__})") from None
    if len(tokens) != 1:
        raise RejectError(f"malformed Emotion file (expected one number, found {len(tokens)} values)")
    try:
        value = float(tokens[0])
    except ValueError:
        raise RejectError(f"malformed Emotion file ({tokens[0][:20]!r} is not a number)") from None
    if not value.is_integer():
        raise RejectError(f"malformed Emotion file ({tokens[0]} is not a whole number)")
    if not 0 <= value < len(EMOTIONS):
        raise RejectError(f"emotion code {value:g} out of range 0-{len(EMOTIONS) - 1}")
    return EMOTIONS[int(value)]


def landmarks_path(landmarks_dir: Path | None, subject: str, sequence: str, stem: str) -> str | None:
    """Landmarks/<subject>/<sequence>/<stem>_landmarks.txt when it exists (AAM points, pixels)."""
    if landmarks_dir is None:
        return None
    candidate = landmarks_dir / subject / sequence / f"{stem}_landmarks.txt"
    return str(candidate) if candidate.is_file() else None


def protocol_notes(n_unlabelled: int, n_between: int, peak_mismatch: list[str], no_landmarks: bool) -> list[str]:
    notes = [f"{n_between} frames between the first and the last {PEAK_FRAMES} of labelled sequences "
             f"are not part of the CK+ protocol (first frame neutral, last {PEAK_FRAMES} the label)"]
    if n_unlabelled:
        notes.append(f"{n_unlabelled} sequence{'s have' if n_unlabelled != 1 else ' has'} no Emotion file "
                     f"and {'are' if n_unlabelled != 1 else 'is'} not used (one reject each)")
    if peak_mismatch:
        shown = ", ".join(peak_mismatch[:5]) + (" ..." if len(peak_mismatch) > 5 else "")
        notes.append(f"{len(peak_mismatch)} labelled sequences' Emotion file names a frame other than "
                     f"their last; the last {PEAK_FRAMES} frames were used all the same: {shown}")
    if no_landmarks:
        notes.append(f"no {LANDMARKS_DIR}/ folder: the 'dataset' annotator has no points for CK+")
    return notes
