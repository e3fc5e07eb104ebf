"""Hostile files built at test time: names that are not UTF-8, FIFOs, PNGs whose header claims a
huge size, damaged videos; and a snapshot of a folder tree to show that a run left it as it was."""
from __future__ import annotations

import os
import stat
import struct
import threading
import zlib
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np


def non_utf8(folder: Path, raw_name: bytes) -> Path:
    """The path of `raw_name` (bytes that are not UTF-8) in `folder`, as Python's os gives it."""
    return folder / os.fsdecode(raw_name)


def write_png(path: Path, pixels: np.ndarray) -> Path:
    """A real PNG written from bytes (cv2.imwrite would take the path: not for non-UTF-8 names)."""
    ok, buf = cv2.imencode(".png", pixels)
    assert ok
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(buf.tobytes())
    return path


def write_big_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """An 8-bit grey PNG of width x height black pixels: a few kB on disk, while decoding it
    allocates width x height bytes. `rows`: only that many rows of pixel data follow the header
    (a file whose header claims a size its data does not hold)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row, parts = zlib.compressobj(9), b"\0" * (width + 1), []    # filter byte + pixels
    for _ in range(height if rows is None else rows):
        parts.append(packer.compress(row))
    parts.append(packer.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


def write_video(path: Path, n: int, fourcc: str = "mp4v", size: int = 64) -> Path:
    """n frames of seeded noise (incompressible: every frame is many bytes of the file)."""
    tmp = path.with_name("tmp" + path.suffix)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), 10.0, (size, size))
    assert writer.isOpened(), fourcc
    rng = np.random.default_rng(0)
    for _ in range(n):
        writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    writer.release()
    os.replace(tmp, path)
    return path


def damage_middle(path: Path) -> None:
    """Overwrite the middle quarter of a file with zeros."""
    data = bytearray(path.read_bytes())
    start, end = len(data) * 3 // 8, len(data) * 5 // 8
    data[start:end] = bytes(end - start)
    path.write_bytes(bytes(data))


@contextmanager
def fifo(path: Path) -> Iterator[Path]:
    """A FIFO at `path`. A writer thread answers every reader that opens it (with end of file),
    so code that wrongly opens it gets nothing instead of blocking the test forever."""
    os.mkfifo(path)
    done = threading.Event()

    def answer() -> None:
        while not done.is_set():
            fd = os.open(path, os.O_WRONLY)          # blocks until a reader opens the FIFO
            os.close(fd)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        done.set()
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)   # releases the writer's pending open
        thread.join(timeout=10)
        os.close(fd)


def tree_state(root: Path) -> dict[bytes, tuple]:
    """Every entry under root (bytes path -> type, size, mtime, target of a link), never opening one."""
    state: dict[bytes, tuple] = {}
    for folder, dirs, files in os.walk(os.fsencode(root)):
        for name in dirs + files:
            path = os.path.join(folder, name)
            info = os.lstat(path)
            target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
            state[os.path.relpath(path, os.fsencode(root))] = (stat.S_IFMT(info.st_mode), info.st_size,
                                                                info.st_mtime_ns, target)
    return state
