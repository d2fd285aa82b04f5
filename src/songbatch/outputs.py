"""The files a manifest's plan makes, and whose they are.

Every published file has one owner: the manifest whose current plan names it. Two manifests may
never plan the same file (checked before anything is written), and a file leaves with the
chapter, track or format that made it. Ownership is what the ledger's `outputs` table records;
a file it does not record is a person's, and songbatch neither replaces nor deletes it.
"""

from __future__ import annotations

import os
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from songbatch.assemblyspec import AssemblySpec, SpeechLayerSpec, UnitSpec
from songbatch.errors import InputError

EXTENSIONS = {
    "m4b": "m4b",
    "mp3-book": "mp3",
    "mp3": "mp3",
    "flac": "flac",
    "opus": "opus",
    "wav": "wav",
}
# The whole book's formats, one file for the book (or one per part), with chapter marks: the
# .m4b, and an MP3 with ID3 CTOC/CHAP frames. The other formats are one file per chapter.
BOOK_FORMATS = ("m4b", "mp3-book")
SUBTITLE_FORMATS = ("srt", "vtt")
# Timed lyrics beside a track (`lyrics_files:`), written where its lines' times are known.
LYRICS_FORMATS = ("lrc",)


@dataclass(frozen=True)
class OutputFile:
    path: Path
    unit: int | None  # None: the whole book (.m4b, book .mp3, subtitles), or one part of it
    fmt: str
    part: int | None = None  # a book split into parts (`parts:`): which, from 1

    @property
    def subtitle(self) -> bool:
        """A timed text file (subtitles, LRC lyrics) rather than audio."""
        return self.fmt in SUBTITLE_FORMATS or self.fmt in LYRICS_FORMATS


def planned_outputs(spec: AssemblySpec) -> list[OutputFile]:
    """Every file an assembly spec (the planner's, stored in the ledger) makes. Subtitles go
    beside the audio they time: each chapter file's (when there are chapter files) and the
    whole book's (the .m4b's and the book .mp3's one stem); an .lrc beside each album track
    whose lines have times."""
    folder = spec.output_dir
    unit_formats = chapter_formats(spec.formats)
    subtitles = list(spec.subtitles)
    files = [
        OutputFile(folder / f"{unit.file}.{EXTENSIONS.get(fmt, fmt)}", unit.unit, fmt)
        for unit in spec.units
        for fmt in [*unit_formats, *(subtitles if unit_formats else [])]
    ]
    files += [
        OutputFile(folder / f"{unit.file}.{fmt}", unit.unit, fmt)
        for unit in spec.units
        if has_timed_lyrics(unit)
        for fmt in spec.lyrics_files
    ]
    book_formats = [fmt for fmt in BOOK_FORMATS if fmt in spec.formats]
    if book_formats:
        files += [
            OutputFile(folder / f"{stem}.{EXTENSIONS.get(fmt, fmt)}", None, fmt, part)
            for part, stem in book_stems(spec)
            for fmt in [*book_formats, *subtitles]
        ]
    return files


def has_timed_lyrics(unit: UnitSpec) -> bool:
    """Whether a track's lines have times: a spoken layer's chunks do; a music engine says
    nothing of when it sings a line."""
    return any(isinstance(layer, SpeechLayerSpec) for layer in unit.layers)


def chapter_formats(formats: Iterable[str]) -> list[str]:
    """The formats written once per chapter (or track): all but the whole book's."""
    return [fmt for fmt in formats if fmt not in BOOK_FORMATS]


def book_stems(spec: AssemblySpec) -> list[tuple[int | None, str]]:
    """The whole book's file stems: `<Book>` alone, or one per part (`<Book> - Part 1`, ...,
    numbers padded to one width so the names sort), with the part's number."""
    groups = spec.parts.groups if spec.parts is not None else ()
    if not groups:
        return [(None, spec.book_file)]
    width = len(str(len(groups)))
    return [(n, f"{spec.book_file} - Part {n:0{width}d}") for n in range(1, len(groups) + 1)]


def audio_outputs(spec: AssemblySpec) -> list[OutputFile]:
    """The planned files that are audio: what is measured and checked against a preset."""
    return [file for file in planned_outputs(spec) if not file.subtitle]


def same_file_key(path: Path | str) -> str:
    """Paths that may name one file somewhere: macOS and Windows (and shares mounted from them)
    ignore case and may store either Unicode normal form."""
    return unicodedata.normalize("NFC", str(path)).casefold()


@dataclass(frozen=True)
class Claim:
    """One manifest's claim on its outputs, for the collision check."""

    manifest: str  # the manifest's path, as shown to the person
    where: str  # "file:line:col: field" prefix that an error points at
    files: Sequence[OutputFile]


def check_collisions(claims: Sequence[Claim], planned_elsewhere: Sequence[Claim] = ()) -> None:
    """Refuse (InputError, exit 2) any file two manifests would write. `claims` are this run's
    manifests; `planned_elsewhere` the other manifests already planned in the workspace."""
    owner: dict[str, Claim] = {}
    for claim in planned_elsewhere:
        owner.update((same_file_key(file.path), claim) for file in claim.files)
    for claim in claims:
        for file in claim.files:
            other = owner.get(same_file_key(file.path))
            if other is not None and other.manifest != claim.manifest:
                raise InputError(
                    f"{claim.where}{file.path} is also an output of {other.manifest}:"
                    " two manifests would overwrite each other's files; give one of them a"
                    " different `title:` or `output:` folder"
                )
        owner.update((same_file_key(file.path), claim) for file in claim.files)


def output_dir_problem(folder: Path) -> str | None:
    """Why files cannot be written into `folder` (or the folders that would be made for it)."""
    probe = folder
    while True:
        if probe.exists() or probe.is_symlink():
            break
        parent = probe.parent
        if parent == probe:
            return f"{folder}: no existing folder above it"
        probe = parent
    if not probe.is_dir():
        if probe == folder:
            return f"{folder} is not a folder"
        return f"{probe} is not a folder, so {folder} cannot be made"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"cannot write in {probe}: permission denied or a read-only filesystem"
    return None


def stale_outputs(recorded: Iterable[str], current: Iterable[OutputFile]) -> list[str]:
    """Recorded outputs of a manifest that its current plan no longer makes."""
    wanted = {str(file.path) for file in current}
    return [path for path in recorded if path not in wanted]
