"""Is a recorded file still what the ledger says? Cheap first (size and mtime), the sha256 when
they differ; and chunk files found on disk that a ledger does not know, adopted once verified.

A chunk's bytes are its job's only copy of the render, and an output is what the person
publishes: a damaged one is noticed the next time it is needed, never assembled or kept.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import soundfile

from songbatch.fsutil import FileStamp, file_sha256, is_regular_file, remove_quietly
from songbatch.ledger import AdoptedChunk, Ledger
from songbatch.workspace import Workspace


class FileState(str, enum.Enum):
    OK = "ok"
    MISSING = "missing"
    DAMAGED = "damaged"


@dataclass(frozen=True)
class Check:
    state: FileState
    stamp: FileStamp | None = None  # set when the bytes matched under a new size or mtime


def check_file(path: Path, sha256: str, stamp: FileStamp | None, *, full: bool = False) -> Check:
    """Whether `path` still holds the bytes hashed `sha256`. With a stamp that still matches
    (and not `full`), no byte is read."""
    try:
        now = FileStamp.of(path)
    except FileNotFoundError:
        return Check(FileState.MISSING)
    except OSError:
        return Check(FileState.DAMAGED)
    if not is_regular_file(path):
        return Check(FileState.DAMAGED)
    if stamp is not None and now == stamp and not full:
        return Check(FileState.OK)
    if stamp is not None and now.size != stamp.size:
        return Check(FileState.DAMAGED)
    try:
        same = file_sha256(path) == sha256
    except OSError:
        return Check(FileState.DAMAGED)
    if not same:
        return Check(FileState.DAMAGED)
    return Check(FileState.OK, None if now == stamp else now)


@dataclass
class ChunkCheck:
    checked: int = 0
    missing: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def check_chunks(ledger: Ledger, manifest_ids: Sequence[int], *, full: bool) -> ChunkCheck:
    """Every done chunk these manifests use. Read-only but for new stamps of unchanged files."""
    report = ChunkCheck()
    restamped: list[tuple[str, FileStamp]] = []
    for record in ledger.done_chunks(manifest_ids):
        report.checked += 1
        check = check_file(record.path, record.sha256, record.stamp, full=full)
        if check.state is FileState.MISSING:
            report.missing.append(record.key)
        elif check.state is FileState.DAMAGED:
            report.damaged.append(record.key)
        elif check.stamp is not None:
            restamped.append((record.key, check.stamp))
    if not full:
        ledger.restamp_chunks(restamped)
    return report


def requeue_bad_chunks(ledger: Ledger, workspace: Workspace, report: ChunkCheck) -> None:
    """Missing and damaged chunks are rendered again; a damaged file is ours (the chunk store
    is the workspace's), so it goes."""
    for key in report.damaged:
        remove_quietly(workspace.chunk_path(key))
    ledger.requeue_chunks(report.missing, "missing-file")
    ledger.requeue_chunks(report.damaged, "damaged-file")


def adopt_chunks(
    ledger: Ledger, workspace: Workspace, manifest_ids: Sequence[int], *, run_id: int | None
) -> int:
    """Pending jobs whose chunk is already on disk under their content key are done: a run
    killed between its rename and its commit, or a ledger that was lost, costs no render. A file
    that does not verify is removed and the job renders as planned."""
    found: list[AdoptedChunk] = []
    for key in ledger.unrendered(manifest_ids):
        path = workspace.chunk_path(key)
        if not path.exists():
            continue
        chunk = verified_chunk(path, key)
        if chunk is None:
            remove_quietly(path)
        else:
            found.append(chunk)
    return ledger.adopt_chunks(found, run_id=run_id) if found else 0


def verified_chunk(path: Path, key: str) -> AdoptedChunk | None:
    """A chunk file that carries `key` and decodes in full, as the ledger would record it."""
    from mutagen import MutagenError

    from songbatch.audio import KEY_TAG
    from songbatch.tagging import vorbis_comment

    try:
        stamp = FileStamp.of(path)
        if vorbis_comment(path, KEY_TAG) != [key]:
            return None
        frames = 0
        with soundfile.SoundFile(path) as handle:
            expected, rate = handle.frames, handle.samplerate
            for block in handle.blocks(65536, dtype="float32"):
                frames += len(block)
        if frames == 0 or frames != expected:
            return None
        sha256 = file_sha256(path)
        if FileStamp.of(path) != stamp:
            return None  # changed while it was read
    except (OSError, RuntimeError, MutagenError, soundfile.LibsndfileError):
        return None
    return AdoptedChunk(key, path, sha256, stamp, round(frames * 1000 / rate))
