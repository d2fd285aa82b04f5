"""Durability for the publish protocol: a rename is durable once its folder is synced."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

_HASH_BLOCK = 1 << 20


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def fsync_file(path: Path) -> None:
    # r+b: Windows refuses to flush a handle opened read-only.
    with open(path, "r+b") as handle:
        handle.flush()
        os.fsync(handle.fileno())


def fsync_dir(path: Path) -> None:
    """Persist a folder's entries (a rename in it); Windows cannot open folders, and needs not."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: Path, final: Path) -> None:
    """Move a finished, synced file into place and make the move itself durable."""
    os.replace(tmp, final)
    fsync_dir(final.parent)


def temp_sibling(path: Path) -> Path:
    """A fresh hidden `.<name>.<random>.tmp` beside `path`: same filesystem, so the final
    os.replace is atomic, and a name `is_temp_name` recognises when a killed run leaves it."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def is_temp_name(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def sweep_temps(folder: Path) -> int:
    """Delete a killed run's temp files in `folder`; only safe with the run lock held."""
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.iterdir():
        if entry.is_file() and is_temp_name(entry.name):
            remove_quietly(entry)
            removed += 1
    return removed


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
