"""A source file's bytes and the text in them, each way it can fail a SourceError naming the
file: what a book's file and a folder's chapter files are read through alike."""

from __future__ import annotations

import codecs
from pathlib import Path

from songbatch.importing.book import SourceError


def source_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise SourceError(path, f"cannot be read: {exc.strerror or exc}") from None


def decoded_text(path: Path, data: bytes) -> tuple[str, str | None]:
    """Text from UTF-8 (a BOM allowed) or UTF-16 with its BOM; else Windows-1252, which older
    Project Gutenberg files are in (a note says so: the text files written are UTF-8)."""
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16"), None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode(
            "cp1252", errors="replace"
        ), f"{path.name} is not UTF-8: read as Windows-1252"
    if "\x00" in text:
        raise SourceError(path, "contains NUL bytes: not a text file (UTF-16 without a BOM?)")
    return text, None
