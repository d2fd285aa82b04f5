"""An import decided before anything is written, then written: which chapters go in, under
which files, what each existing file is (new, ours to refresh, edited by its person and kept,
in the way), and the manifest's text. `plan_import` reads only; `write_import` writes each
file whole (a temp file beside it, synced, renamed), the texts first and the manifest last."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from songbatch.errors import InputError, ManifestError, SongbatchError
from songbatch.fsutil import fsync_dir, make_public
from songbatch.importing.book import Book, Chapter, SplitOptions
from songbatch.importing.layout import chapter_file_name, chapter_folder, manifest_text, relative
from songbatch.importing.merge import NewEntry, insert_chapters
from songbatch.importing.record import RECORD_NAME, Record, load_record, sha256
from songbatch.importing.source import read_book
from songbatch.manifest import Audiobook, load_manifest
from songbatch.yamlstrict import TextEncodingError, decode_utf8


class FileState(str, Enum):
    NEW = "new"  # not there yet: written
    REFRESHED = "refreshed"  # the last import's, unchanged since: written again
    UNCHANGED = "unchanged"  # already what the source gives
    EDITED = "edited, kept"  # changed since the last import wrote it: the person's, kept


class ChapterStatus(str, Enum):
    NEW = "new"  # added to the manifest
    KEPT = "in the manifest"  # its entry (title, overrides) kept as the person left it
    REMOVED = "removed from the manifest"  # by its person after the last import: stays out
    LEFT_OUT = "left out"  # front or back matter, without --include-matter


@dataclass(frozen=True)
class PlannedChapter:
    chapter: Chapter
    status: ChapterStatus
    file: Path | None = None  # its text file; None when left out
    text: FileState | None = None  # what happens to that file; None when it is not written


@dataclass(frozen=True)
class ImportPlan:
    book: Book
    manifest: Path
    manifest_text: str | None  # None: the manifest stays as it is
    chapters: tuple[PlannedChapter, ...]
    writes: tuple[tuple[Path, bytes], ...]  # chapter texts and cover, before the manifest
    record: Record
    notes: tuple[str, ...]
    reimport: bool  # the manifest was there: its edits are kept

    @property
    def record_path(self) -> Path:
        return chapter_folder(self.manifest) / RECORD_NAME


def plan_import(
    source: Path, manifest: Path, options: SplitOptions, *, include_matter: bool = False
) -> ImportPlan:
    manifest = _manifest_path(manifest)
    book = read_book(source, options, include_matter=include_matter)
    folder = chapter_folder(manifest)
    if folder.resolve() == source.resolve():
        raise InputError(
            f"{manifest}: its chapter texts would go in {folder}, the folder being imported;"
            " choose another -o"
        )
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file; songbatch import writes the chapter texts there")
    record = load_record(folder / RECORD_NAME)
    existing = _existing(manifest) if manifest.exists() else None
    planner = _Planner(manifest, record, existing)
    chapters = planner.chapters(book, include_matter)
    cover = planner.cover(book)
    notes = list(book.notes) + planner.notes
    if existing is not None and record.source not in (None, book.source.name):
        # A book of another name may be the same book revised, or another book entirely.
        notes.append(f"{manifest.name} was imported from {record.source}, not {book.source.name}")
    if existing is None and not book.metadata.author:
        notes.append(f"no author found: set `author:` in {manifest.name} (it says Unknown)")
    if existing is None:
        entries = [(c.chapter.title, relative(manifest, c.file)) for c in chapters if c.file]
        named_cover = None if cover is None else relative(manifest, cover)
        text: str | None = manifest_text(book, entries, named_cover)
    else:
        text = insert_chapters(existing[1], planner.new_entries, str(manifest))
        text = None if text == existing[1] else text
    return ImportPlan(
        book=book,
        manifest=manifest,
        manifest_text=text,
        chapters=tuple(chapters),
        writes=tuple(planner.writes),
        record=planner.next_record(book.source),
        notes=tuple(notes),
        reimport=existing is not None,
    )


def write_import(plan: ImportPlan) -> None:
    chapter_folder(plan.manifest).mkdir(parents=True, exist_ok=True)
    for path, data in plan.writes:
        _write_whole(path, data)
    if plan.manifest_text is not None:
        _write_whole(plan.manifest, plan.manifest_text.encode("utf-8"))
    record = plan.record.to_json()
    if not plan.record_path.exists() or plan.record_path.read_bytes() != record:
        _write_whole(plan.record_path, record)


def _manifest_path(manifest: Path) -> Path:
    if manifest.suffix.lower() not in (".yaml", ".yml"):
        raise InputError(f"{manifest}: a manifest's name ends in .yaml (-o book.yaml)")
    if manifest.is_dir():
        raise InputError(f"{manifest}: is a folder, not a manifest")
    return manifest.expanduser().absolute()


def _existing(manifest: Path) -> tuple[Audiobook, str]:
    """The person's manifest and its text; it must load, so that what an import adds keeps
    it loading (a manifest broken halfway through an edit is theirs to finish first)."""
    try:
        loaded = load_manifest(manifest)
        text = decode_utf8(manifest.read_bytes(), "manifest")
    except ManifestError as exc:
        raise InputError(
            f"{exc} (fix it to import again into it, or import with another -o)"
        ) from None
    except (OSError, TextEncodingError) as exc:
        raise InputError(f"{manifest}: cannot read it: {exc}") from None
    if not isinstance(loaded.manifest, Audiobook):
        raise InputError(f"{manifest}: is an album; songbatch import writes audiobooks")
    return loaded.manifest, text


class _Planner:
    def __init__(
        self, manifest: Path, record: Record, existing: tuple[Audiobook, str] | None
    ) -> None:
        self.manifest = manifest
        self.record = record
        self.existing = existing[0] if existing else None
        self.writes: list[tuple[Path, bytes]] = []
        self.written: dict[str, str] = {}  # manifest-relative path -> sha256 now recorded
        self.new_entries: list[NewEntry] = []
        self.sources: list[tuple[str, str]] = []  # (file, source title) of this import
        self.notes: list[str] = []
        # The manifest's chapters by their text file, with their place in its list.
        self.entries: dict[Path, int] = {}
        if self.existing is not None:
            for chapter in self.existing.chapters:
                if chapter.text_file is not None and chapter.credits is None:
                    self.entries.setdefault(chapter.text_file, int(chapter.where[1]))

    def chapters(self, book: Book, include_matter: bool) -> list[PlannedChapter]:
        reading = book.chapters_to_read(include_matter)
        files = self._files(reading)
        planned = []
        previous: int | None = None  # the manifest entry the last chapter read is (or follows)
        for chapter in book.chapters:
            if chapter not in reading:
                planned.append(PlannedChapter(chapter, ChapterStatus.LEFT_OUT))
                continue
            path = files[id(chapter)]
            rel = relative(self.manifest, path)
            self.sources.append((rel, chapter.title))
            status = self._status(path, rel)
            if status is ChapterStatus.REMOVED:
                planned.append(PlannedChapter(chapter, status, path))
                continue
            if status is ChapterStatus.KEPT:
                previous = self.entries[path.resolve()]
            elif self.existing is not None:
                self.new_entries.append(NewEntry(previous, chapter.title, rel))
            state = self._file(path, (chapter.text + "\n").encode("utf-8"))
            planned.append(PlannedChapter(chapter, status, path, state))
        return planned

    def cover(self, book: Book) -> Path | None:
        """The cover file to name in a new manifest; on a re-import the manifest's own, when
        it is still the one the import wrote (a person's other cover is never replaced)."""
        if book.cover is None:
            return None
        path = chapter_folder(self.manifest) / f"cover{book.cover.extension}"
        if self.existing is not None and self.existing.cover != path.resolve():
            return None
        self._file(path, book.cover.data)
        return path

    def next_record(self, source: Path) -> Record:
        ours = {f for f, _ in self.sources}
        earlier = [(f, t) for f, t in self.record.chapters if f not in ours]
        files = {**self.record.files, **self.written}
        return Record(files, self.sources + earlier, source.name)

    def _files(self, reading: list[Chapter]) -> dict[int, Path]:
        """Each chapter's text file: the one the last import gave the source's chapter of
        that title, else a new numbered one."""
        folder = chapter_folder(self.manifest)
        taken: set[str] = set()
        files = {}
        for number, chapter in enumerate(reading, start=1):
            rel = self.record.file_of(chapter.title, taken)
            if rel is None:
                name = chapter_file_name(number, len(reading), chapter.title)
                rel = relative(self.manifest, folder / name)
                stem, n = rel.removesuffix(".txt"), 2
                while rel in taken or rel in self.record.files:
                    rel, n = f"{stem}-{n}.txt", n + 1
            taken.add(rel)
            files[id(chapter)] = self.manifest.parent / rel
        return files

    def _status(self, path: Path, rel: str) -> ChapterStatus:
        if self.existing is None:
            return ChapterStatus.NEW
        if path.resolve() in self.entries:
            return ChapterStatus.KEPT
        if any(f == rel for f, _ in self.record.chapters):
            return ChapterStatus.REMOVED
        return ChapterStatus.NEW

    def _file(self, path: Path, data: bytes) -> FileState:
        rel = relative(self.manifest, path)
        digest = sha256(data)
        state = self._state(path, rel, digest)
        if state is FileState.EDITED:
            self.notes.append(f"{rel}: edited since the last import, kept as it is")
            return state
        if state is not FileState.UNCHANGED:
            self.writes.append((path, data))
        self.written[rel] = digest
        return state

    def _state(self, path: Path, rel: str, digest: str) -> FileState:
        try:
            current = sha256(path.read_bytes())
        except FileNotFoundError:
            return FileState.NEW
        except OSError as exc:
            raise InputError(f"{path}: cannot read it: {exc.strerror or exc}") from None
        if current == digest:
            return FileState.UNCHANGED
        recorded = self.record.files.get(rel)
        if recorded == current:
            return FileState.REFRESHED
        if recorded is not None or path.resolve() in self.entries:
            return FileState.EDITED
        raise InputError(
            f"{path}: is in the way (songbatch import did not write it): move it aside, or"
            " import with another -o"
        )


def _write_whole(path: Path, data: bytes) -> None:
    """`path` holds `data` or what it held before, never a part: readers and a kill midway
    see no half-written chapter or manifest."""
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise SongbatchError(f"{path}: cannot write it: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        make_public(Path(name))
        os.replace(name, path)
        fsync_dir(path.parent)
    except BaseException as exc:  # Ctrl-C too: no temp file is left behind
        Path(name).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise SongbatchError(f"{path}: cannot write it: {exc.strerror or exc}") from None
        raise
