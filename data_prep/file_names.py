"""File names as the operating system gives them, written to CSV, Parquet and JSON without loss.

On Linux a file name is bytes. Python hands a name that is not valid UTF-8 over as a str with
each undecodable byte as a lone surrogate (U+DC80-U+DCFF, "surrogateescape"), and such a str
cannot be encoded as UTF-8: Arrow refuses it, a strict CSV writer aborts, OpenCV's C++ side
crashes on it. Outputs therefore carry two things for a name:
- its text: valid UTF-8, where each undecodable byte is spelled `\\xNN` (readable, but a real
  name may contain those four characters too, so the text alone is not always the name);
- its hex: the name's bytes in hexadecimal when they are not valid UTF-8, else empty.
`original_name(text, hex)` gives back the exact str (`os.fsencode` of it: the exact bytes).
"""
from __future__ import annotations

import os


def name_bytes(name: str) -> bytes:
    """The bytes the file system holds for `name` (surrogate escapes back to their bytes)."""
    try:
        return name.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:      # a surrogate no file system produced (U+D800-U+DC7F ...)
        return name.encode("utf-8", "surrogatepass")


def is_utf8_name(name: str) -> bool:
    """Whether `name` encodes as UTF-8 as it stands (no surrogate escapes): safe for any writer."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def name_text(name: str) -> str:
    """Valid UTF-8 text of a name: itself when it is UTF-8, else undecodable bytes as `\\xNN`."""
    if is_utf8_name(name):
        return name
    return name_bytes(name).decode("utf-8", "backslashreplace")


def name_hex(name: str) -> str:
    """Hex of the name's bytes when they are not valid UTF-8 (so the text is not the name), else ''."""
    return "" if is_utf8_name(name) else name_bytes(name).hex()


def original_name(text: str, hex_bytes: str | None) -> str:
    """The name as Python's os functions take it, from its written text and hex."""
    return os.fsdecode(bytes.fromhex(hex_bytes)) if hex_bytes else text
