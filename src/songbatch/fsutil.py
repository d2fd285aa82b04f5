"""Durability and ownership of files: a rename is durable once its folder is synced; a temp file
names the workspace that owns it; a published file honours the umask."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

_HASH_BLOCK = 1 << 20
_UMASK_LOCK = threading.Lock()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def write_synced(path: Path, data: bytes) -> str:
    """`data` written at `path` (a temp name: nothing is renamed) and synced; its sha256."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return hashlib.sha256(data).hexdigest()


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


# --- ownership of temp files -------------------------------------------------------------------


def temp_sibling(path: Path, owner: str) -> Path:
    """A fresh hidden `.<name>.songbatch-<owner>.<random>.tmp` beside `path`: on the same
    filesystem, so the final os.replace is atomic, and named so that only the workspace `owner`
    ever sweeps it (an output folder may be shared with other tools and other workspaces)."""
    fd, name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{_owner_tag(owner)}.", suffix=".tmp"
    )
    os.close(fd)
    return Path(name)


def _owner_tag(owner: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,64}", owner):
        raise ValueError(f"not a workspace id: {owner!r}")
    return f"songbatch-{owner}"


def is_own_temp(name: str, owner: str) -> bool:
    """Whether `name` is a temp file that workspace `owner` made (`temp_sibling`)."""
    tag = re.escape(_owner_tag(owner))
    return re.fullmatch(rf"\..+\.{tag}\.[A-Za-z0-9_]+\.tmp", name, flags=re.DOTALL) is not None


def sweep_temps(folder: Path, owner: str) -> int:
    """Delete the killed runs' temp files of workspace `owner` in `folder`; anyone else's file,
    hidden `.tmp` or not, is left alone. Only safe with that workspace's run lock held."""
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in folder.iterdir():
        if is_own_temp(entry.name, owner) and entry.is_file():
            remove_quietly(entry)
            removed += 1
    return removed


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


# --- modes -------------------------------------------------------------------------------------


def current_umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere it can only be read by setting
    it, and setting it back, under a lock (the assembly thread publishes too)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def make_public(path: Path) -> None:
    """Give a temp file (mkstemp makes them 0600) the mode a plain new file would have, so a
    media server running as another user can read what songbatch publishes."""
    os.chmod(path, 0o666 & ~current_umask())


def create_private(path: Path) -> None:
    """Create `path` empty with mode 0600 if it does not exist (the ledger holds the texts)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


# --- cheap change detection ----------------------------------------------------------------------


@dataclass(frozen=True)
class FileStamp:
    """Size and modification time: when both still match, the bytes are taken as unchanged."""

    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        info = os.stat(path)
        return cls(size=info.st_size, mtime_ns=info.st_mtime_ns)


def is_regular_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
