"""Finished jobs -> chapter and track files, and a book's .m4b and book .mp3, published like
chunks are.

Reads only the ledger (the assembly spec the planner stored, and the done jobs' files). Each
chapter is first streamed into a content-keyed FLAC master; every format is encoded from it, so
memory stays flat however long the book is and an unchanged chapter is never assembled twice.

Every file is its own outcome: a folder in the way, a full disk or a tagging error fails that
file alone, with its reason in the ledger, and the others are still written. A file at a final
path is replaced only if songbatch wrote it (the ledger's `outputs` table says so, or, for a
ledger that was lost, the file's own SONGBATCH_OUTPUT tag names this workspace).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile

from songbatch import audio, layers, sections, streams, subtitles
from songbatch.assemblyspec import AssemblySpec, UnitSpec
from songbatch.crashpoints import pause_point
from songbatch.errors import Interrupted, SongbatchError
from songbatch.fsutil import (
    FileStamp,
    file_sha256,
    fsync_file,
    make_public,
    remove_quietly,
    replace_durably,
    temp_sibling,
)
from songbatch.integrity import FileState, check_file
from songbatch.ledger import JobState, Ledger, ManifestInfo, UnitJob
from songbatch.mastering import MASTERED_SUFFIX, master_to, mastered_key
from songbatch.outputs import (
    BOOK_FORMATS,
    OutputFile,
    book_stems,
    planned_outputs,
    stale_outputs,
)
from songbatch.presets import Encoding, Preset, preset, spec_encoding
from songbatch.replaygain import (
    LOUDNESS_SUFFIX,
    Loudness,
    ReplayGain,
    album_loudness,
    loudness_of,
    loudness_path,
    replaygain,
)
from songbatch.tagging import PUBLISHING_TAGS, Tags, read_origin
from songbatch.workspace import Workspace


class AssemblyError(SongbatchError):
    """A chapter or track could not be assembled (a chunk file is missing or damaged)."""


@dataclass(frozen=True)
class Master:
    path: Path
    duration_ms: int
    inputs_sha256: str


@dataclass(frozen=True)
class FileOutcome:
    path: Path
    written: bool  # False: already current (or a failure)
    error: str | None = None


@dataclass(frozen=True)
class ChunkLayout:
    """A unit's master as pieces (its chunks and silences, where it puts them), known for its
    first done chunks or all of them: what its streams' sections are cut from."""

    pieces: list[sections.Piece]
    rate: int
    channels: int


@dataclass(frozen=True)
class Pruned:
    removed: list[Path]
    kept: list[Path]  # changed since songbatch wrote them: left for the person


# Tags added after files were first written: absent (None) they leave an output's key as it was.
_SINCE_ADDED = frozenset({"lyrics", "replaygain", *PUBLISHING_TAGS})


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tags(
    spec: AssemblySpec,
    title: str,
    track: tuple[int, int] | None = None,
    lyrics: str | None = None,
) -> Tags:
    """A chapter's or track's tags (with its number), or the whole book's (without)."""
    base = spec.tags
    return Tags(
        title=title,
        album=base.album,
        artist=base.artist,
        album_artist=base.album_artist,
        narrator=base.narrator,
        track=track,
        disc=None if track is None else (1, 1),
        genre=base.genre,
        year=base.year,
        language=base.language,
        description=base.description,
        comment=base.comment,
        lyrics=lyrics,
        cover=spec.cover,
        **{name: getattr(base, name) for name in PUBLISHING_TAGS},
    )


def _book_tags(spec: AssemblySpec, part: int | None, parts: int) -> Tags:
    """The whole book's tags; a part's keep the book as album and add its number as title,
    track and disc (N of M), which is how players and Audiobookshelf order the files."""
    album = spec.tags.album
    if part is None:
        return _tags(spec, album)
    tags = _tags(spec, f"{album}, Part {part}")
    tags.track = tags.disc = (part, parts)
    return tags


# Silence an engine leaves before its first word and after its last (a breath, a fade): a
# preset's head and tail bounds leave room for it.
_ENGINE_HEAD_MS = 300
_ENGINE_TAIL_MS = 1000


def _silences(lead_in_ms: int, pauses: list[int], chosen: Preset) -> tuple[int, list[int]]:
    """The lead-in and the pauses after each chunk, the first and the last held inside the
    preset's head and tail room-tone bounds (ACX: 0.5-1 s, 1-5 s) whatever the manifest's
    pauses say."""
    if chosen.head_silence_s is not None:
        low, high = (round(s * 1000) for s in chosen.head_silence_s)
        lead_in_ms = max(low, min(lead_in_ms, high - _ENGINE_HEAD_MS))
    if chosen.tail_silence_s is not None and pauses:
        low, high = (round(s * 1000) for s in chosen.tail_silence_s)
        pauses = [*pauses[:-1], max(low + 200, min(pauses[-1], high - _ENGINE_TAIL_MS))]
    return lead_in_ms, pauses


# How far into a pause a section cut starts (and must end before its end).
_CUT_MARGIN_MS = 60


def unit_silences(
    spec: AssemblySpec, jobs: Sequence[UnitJob], chosen: Preset | None = None
) -> tuple[int, list[int]]:
    """The unit's lead-in and the pause after each of its chunks, as its master lays them
    out (within the preset's head and tail rules)."""
    return _silences(
        spec.lead_in_ms, [j.pause_after_ms for j in jobs], chosen or preset(spec.master)
    )


# ---------------------------------------------------------------------- work folder keys
# The Assembler names what it builds in the work folder by these keys, and gc keeps exactly
# the names they give for the plans in the ledger: one derivation, so the two cannot drift.


def raw_master_key(spec: AssemblySpec, unit: int, jobs: Sequence[UnitJob]) -> str:
    """A unit's unmastered master (`<key>.flac`): its chunks' recorded hashes, in order, and
    how they are laid out (pauses, lead-in, fades; a layered track's mix, its layers as the
    spec stores them)."""
    meta = spec.units[unit]
    fade_in_ms, fade_out_ms = meta.fade_in_ms, meta.fade_out_ms
    if meta.layered:
        return _digest(
            {
                "mix": layers.MIX_VERSION,
                "layers": [layer.to_dict() for layer in meta.layers],
                "min_ms": meta.min_ms,
                "jobs": [(j.sha256, j.pause_after_ms) for j in jobs],
                "fades": [fade_in_ms, fade_out_ms],
            }
        )
    lead_in_ms, pauses = unit_silences(spec, jobs)
    return _digest(
        {
            "lead_in_ms": lead_in_ms,
            "jobs": [(j.sha256, pause) for j, pause in zip(jobs, pauses, strict=True)],
            # Only when a track fades: masters made before fades keep their key.
            **({"fades": [fade_in_ms, fade_out_ms]} if fade_in_ms or fade_out_ms else {}),
        }
    )


def master_path(folder: Path, key: str) -> Path:
    return folder / f"{key}.flac"


def stream_key(master_key: str, fmt: str, encoding: Encoding) -> str:
    """A unit's stream for a book format (streams.py): its master and the format's encoding."""
    return _digest({"master": master_key, "format": fmt, "encoding": encoding.key_fields()})


def output_key(
    masters: Sequence[str],
    fmt: str,
    tags: Tags,
    cover_sha256: str | None,
    chapters: Sequence[audio.ChapterMark] | None,
    encoding: Encoding,
    *,
    joined: bool = False,
) -> str:
    """An output file's inputs (its ledger record and its SONGBATCH_OUTPUT tag): the masters'
    keys, the format, the tags and cover, the chapter marks, the encoding, and whether it was
    joined from streams. A file whose inputs are unchanged is current and never encoded again."""
    return _digest(
        {
            "masters": list(masters),
            "format": fmt,
            # Lyrics and publishing fields only when set: files written before them stay
            # current.
            "tags": {
                k: str(v)
                for k, v in vars(tags).items()
                if k != "cover" and not (k in _SINCE_ADDED and v is None)
            },
            "cover": cover_sha256,
            "chapters": None if chapters is None else [vars(c) for c in chapters],
            # Only where a preset sets one: files encoded before presets stay current.
            **({"encoding": encoding.key_fields()} if encoding != Encoding() else {}),
            **({"joined": True} if joined else {}),
        }
    )


def joined_formats(spec: AssemblySpec) -> list[str]:
    """The plan's whole-book formats: each unit has a stream for each of them."""
    return [fmt for fmt in BOOK_FORMATS if fmt in spec.formats]


def work_names(ledger: Ledger, info: ManifestInfo) -> set[str]:
    """The names of the files in the work folder that this manifest's current assembly reads
    again rather than builds: each unit's master (raw, and mastered where a preset masters),
    an album track's loudness beside it, and its stream (with its frame count) per book
    format. A unit with a chunk not rendered has none: its master's key is not known yet."""
    spec = info.assembly
    chosen = preset(spec.master)
    names: set[str] = set()
    for unit in (meta.unit for meta in spec.units):
        jobs = ledger.unit_jobs(info.id, unit)
        if not jobs or any(job.sha256 is None for job in jobs):
            continue
        raw = raw_master_key(spec, unit, jobs)
        key = mastered_key(raw, chosen) if chosen.masters else raw
        names |= {master_path(Path(), raw).name, master_path(Path(), key).name}
        if spec.kind == "album":
            names.add(loudness_path(Path(), key).name)
        for fmt in joined_formats(spec):
            path = streams.stream_path(Path(), stream_key(key, fmt, spec_encoding(spec, fmt)), fmt)
            names |= {path.name, streams.count_path(path).name}
    return names


_KEY = "[0-9a-f]{64}"
_MASTER_KEY = f"{_KEY}(?:-{MASTERED_SUFFIX})?"
_STREAM_SUFFIXES = "|".join(re.escape(f.suffix) for f in streams.STREAM_FORMATS.values())
_WORK_NAME = re.compile(
    rf"{_MASTER_KEY}(?:\.flac|{re.escape(LOUDNESS_SUFFIX)})"
    rf"|{_KEY}(?:{_STREAM_SUFFIXES})(?:{re.escape(streams.COUNT_SUFFIX)})?"
)


def is_work_name(name: str) -> bool:
    """Whether `name` is one the Assembler gives a file in the work folder (of any key, any
    preset, any mastering version): only such files are ever gc's to remove."""
    return _WORK_NAME.fullmatch(name) is not None


def _holds(path: Path, content: bytes) -> bool:
    """Whether the file at `path` is exactly `content` (read only when the size matches)."""
    try:
        same_size = path.is_file() and path.stat().st_size == len(content)
        return same_size and path.read_bytes() == content
    except OSError:
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename or ""
        return f"{exc.strerror}: {where}" if where else exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


class Assembler:
    def __init__(
        self,
        ledger: Ledger,
        workspace: Workspace,
        *,
        run_id: int | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        self.ledger = ledger
        self.workspace = workspace
        self.owner = workspace.owner_id()
        self.run_id = run_id
        self.cancel = cancel or threading.Event()
        # A chunk's frames by (path, sha256): its header is read once per unit, not once per
        # chunk that arrives after it. Dropped as the unit's streams are made.
        self._frames: dict[tuple[Path, str, int], int] = {}
        self._misfits: set[str] = set()  # sections that did not come to whole frames
        self._sections: dict[Path, streams.ChapterStream] = {}  # on disk, as last seen
        self._cut_ms: dict[tuple[int, int], int] = {}  # where a unit's last section ended

    # ------------------------------------------------------------------ units

    def assemble_unit(self, info: ManifestInfo, unit: int) -> list[FileOutcome]:
        """The unit's file in every chapter format, and its subtitles, each its own outcome;
        and its streams for the whole book's files."""
        parts = self.unit_parts(info)
        return [outcome for part in parts for outcome in self.assemble_part(info, unit, part)]

    def unit_parts(self, info: ManifestInfo) -> list[str]:
        """What a unit's assembly is made of, each part buildable on its own (and at once, by
        several assemblers) once the unit's master is: its chapter files, and a stream per
        whole-book format."""
        return ["files", *(f"stream {fmt}" for fmt in self._joined_formats(info))]

    def assemble_part(self, info: ManifestInfo, unit: int, part: str) -> list[FileOutcome]:
        if part == "files":
            return self._unit_files(info, unit)
        fmt = part.removeprefix("stream ")
        try:
            self.chapter_stream(info, unit, fmt)
        except Interrupted:
            raise
        except Exception:  # the book's build encodes it again and reports why it fails
            pass
        return []

    def unit_failed(self, info: ManifestInfo, unit: int, exc: BaseException) -> list[FileOutcome]:
        """The unit's chapter files (and the book's, through them) failed for `exc`: its master
        cannot be made."""
        files = [f for f in planned_outputs(info.assembly) if f.unit == unit and not f.subtitle]
        return [self._failed(info, file, exc) for file in files]

    def _unit_files(self, info: ManifestInfo, unit: int) -> list[FileOutcome]:
        spec = info.assembly
        planned = [f for f in planned_outputs(spec) if f.unit == unit]
        files = [f for f in planned if not f.subtitle]
        if not files:
            return []
        outcomes = self._unit_subtitles(info, unit, [f for f in planned if f.subtitle])
        meta = spec.units[unit]
        try:
            master = self.master(info, unit)
        except Interrupted:
            raise
        except Exception as exc:
            return [*self.unit_failed(info, unit, exc), *outcomes]
        track = (unit + 1, len(spec.units))
        tags = _tags(spec, meta.title, track=track, lyrics=self._lyrics(info, unit))
        try:
            tags.replaygain = self._replaygain(info, master)
        except Interrupted:
            raise
        except Exception as exc:
            return [*(self._failed(info, file, exc) for file in files), *outcomes]
        written = [self._publish(info, file, [master], tags, chapters=None) for file in files]
        return [*written, *outcomes]

    def _joined_formats(self, info: ManifestInfo) -> list[str]:
        return joined_formats(info.assembly)

    def chapter_stream(self, info: ManifestInfo, unit: int, fmt: str) -> streams.ChapterStream:
        """The unit's master encoded once as `fmt`'s raw stream (streams.py), keyed by the
        master and the format's encoding: joined from sections encoded from its chunks as they
        arrived where it can be (`streams_from_chunks`), else encoded from the master."""
        if fmt in self.streams_from_chunks(info, unit):
            made = self._stream_from_chunks(info, unit, fmt)
            if made is not None:
                return made
        master = self.master(info, unit)
        encoding = self._encoding(info, fmt)
        key = stream_key(master.inputs_sha256, fmt, encoding)
        path = streams.stream_path(self.workspace.work_dir, key, fmt)
        found = streams.load_stream(path, fmt)
        if found is not None:
            return found
        started = time.monotonic()
        stream = streams.encode_stream(
            master.path,
            path,
            fmt,
            encoding,
            owner=self.owner,
            cancel=self.cancel,
            quiet_at=self._quiet_at(info, unit, master),
            sections=os.cpu_count() or 1,
        )
        self._timed(fmt, master.duration_ms, started)
        return stream

    def _quiet_at(self, info: ManifestInfo, unit: int, master: Master) -> list[int]:
        """Master samples where a silence of the unit (its lead-in, a pause between chunks)
        leaves room for a section cut (streams.QUIET_SAMPLES), counted over the segments
        `_laid` lays out; _CUT_MARGIN_MS into each, for a master whose mastering moved
        it a little."""
        rate = int(soundfile.info(str(master.path)).samplerate)
        jobs = self.ledger.unit_jobs(info.id, unit)
        laid_at = int(soundfile.info(str(self._chunk_path(jobs[0]))).samplerate)
        margin = round(_CUT_MARGIN_MS * laid_at / 1000)
        room = streams.QUIET_SAMPLES * laid_at / rate + 2 * margin
        quiet, at = [], 0
        for segment in self._segments(jobs, *self._unit_silences(info, jobs)):
            frames = audio.segment_frames(segment, laid_at)
            if segment.path is None and frames >= room:
                quiet.append(round((at + margin) * rate / laid_at))
            at += frames
        return quiet

    def _unit_silences(
        self, info: ManifestInfo, jobs: list[UnitJob], chosen: Preset | None = None
    ) -> tuple[int, list[int]]:
        return unit_silences(info.assembly, jobs, chosen)

    def _replaygain(self, info: ManifestInfo, master: Master) -> ReplayGain | None:
        """An album track's ReplayGain: its own gain, and the album's once every track is
        rendered (until then the album gain is left out; the end of the run that renders the
        last track writes it into every track)."""
        if info.assembly.kind != "album":
            return None
        track = loudness_of(master.path, master.inputs_sha256, owner=self.owner)
        return replaygain(track, self._album_loudness(info))

    def _album_loudness(self, info: ManifestInfo) -> Loudness | None:
        units = [unit.unit for unit in info.assembly.units]
        jobs = [job for unit in units for job in self.ledger.unit_jobs(info.id, unit)]
        if any(job.state != JobState.DONE for job in jobs):
            return None
        masters = [self.master(info, unit) for unit in units]
        return album_loudness(
            [loudness_of(m.path, m.inputs_sha256, owner=self.owner) for m in masters]
        )

    def _lyrics(self, info: ManifestInfo, unit: int) -> str | None:
        """An album track's lyrics, from its job's request in the ledger: the assembly spec
        does not carry them, and the request is what was rendered."""
        if info.assembly.kind != "album":
            return None
        jobs = self.ledger.unit_jobs(info.id, unit)
        meta = info.assembly.units[unit]
        if meta.layered:  # a layered track's words are its spoken layers'
            return "\n".join(layers.lyric_lines(meta, self._job_texts(jobs))) or None
        found = self.ledger.job_requests([job.key for job in jobs[:1]])
        lyrics = next((request.lyrics for request in found.values()), None)
        return lyrics if lyrics is not None and lyrics.strip() else None

    def master(self, info: ManifestInfo, unit: int) -> Master:
        """The unit's master: its chunks and pauses in one FLAC, mastered to the manifest's
        preset where it names one (made from the chunks then, with no unmastered FLAC)."""
        chosen = preset(info.assembly.master)
        jobs = self.ledger.unit_jobs(info.id, unit)
        inputs = raw_master_key(info.assembly, unit, jobs)

        def laid() -> audio.MasterAudio:  # only read when the file is not there yet
            return self._laid(info, unit, jobs, chosen)

        if not chosen.masters:
            return self._built_master(inputs, jobs, laid)
        return self._mastered(inputs, jobs, laid, chosen)

    def _laid(
        self, info: ManifestInfo, unit: int, jobs: list[UnitJob], chosen: Preset
    ) -> audio.MasterAudio:
        """The unit's audio as its master holds it: a chapter's chunks and pauses, or a
        layered track's mix, with the unit's fades."""
        meta = info.assembly.units[unit]
        fade_in_ms, fade_out_ms = meta.fade_in_ms, meta.fade_out_ms
        if meta.layered:
            return layers.mix_audio(
                self._layout(jobs, meta),
                cancel=self.cancel,
                fade_in_ms=fade_in_ms,
                fade_out_ms=fade_out_ms,
            )
        lead_in_ms, pauses = self._unit_silences(info, jobs, chosen)
        probe = soundfile.info(str(self._chunk_path(jobs[0])))
        return audio.segments_audio(
            self._segments(jobs, lead_in_ms, pauses),
            sample_rate=probe.samplerate,
            channels=probe.channels,
            cancel=self.cancel,
            fade_in_ms=fade_in_ms,
            fade_out_ms=fade_out_ms,
        )

    def _layout(self, jobs: list[UnitJob], meta: UnitSpec) -> layers.Layout:
        paths = [self._chunk_path(job) for job in jobs]
        return layers.layout(meta, paths, [job.pause_after_ms for job in jobs])

    def _built_master(
        self, inputs: str, jobs: list[UnitJob], laid: Callable[[], audio.MasterAudio]
    ) -> Master:
        """The master of these inputs in the work folder, written from `laid` unless there."""
        path = master_path(self.workspace.work_dir, inputs)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            with self._reading_chunks(jobs):
                audio.write_master(laid(), path, owner=self.owner)
            self._timed("master", audio.audio_duration_ms(path), started)
        return Master(path=path, duration_ms=audio.audio_duration_ms(path), inputs_sha256=inputs)

    def _mastered(
        self,
        inputs: str,
        jobs: list[UnitJob],
        laid: Callable[[], audio.MasterAudio],
        chosen: Preset,
    ) -> Master:
        """The unit brought to the preset's level, peak limit and rate (mastering.py), keyed
        by its raw master's key and the preset: made once, whatever formats are encoded from
        it."""
        key = mastered_key(inputs, chosen)
        path = master_path(self.workspace.work_dir, key)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            started = time.monotonic()
            tmp = temp_sibling(path, self.owner)
            try:
                with self._reading_chunks(jobs):
                    master_to(laid(), tmp, chosen, name=path.name, cancel=self.cancel)
                fsync_file(tmp)
                replace_durably(tmp, path)
            finally:
                remove_quietly(tmp)
            self._timed("master", audio.audio_duration_ms(path), started)
        return Master(path=path, duration_ms=audio.audio_duration_ms(path), inputs_sha256=key)

    @contextlib.contextmanager
    def _reading_chunks(self, jobs: list[UnitJob]) -> Iterator[None]:
        """A chunk that cannot be read, as the AssemblyError naming the damaged chunks."""
        try:
            yield
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise self._damaged_chunks(jobs, exc) from exc

    def _timed(self, fmt: str, audio_ms: int, started: float) -> None:
        """How long a build took, for `cost`'s estimate of the assembly a render still needs."""
        self.ledger.record_encode(
            run_id=self.run_id, fmt=fmt, audio_ms=audio_ms, build_s=time.monotonic() - started
        )

    def _damaged_chunks(self, jobs: list[UnitJob], exc: BaseException) -> AssemblyError:
        """A chunk that no longer decodes is found by its hash and rendered again next run."""
        bad = [
            job.key
            for job in jobs
            if job.out_path is not None
            and job.sha256 is not None
            and check_file(self.ledger.resolve(job.out_path), job.sha256, None, full=True).state
            is not FileState.OK
        ]
        if not bad:
            return AssemblyError(f"a chunk does not decode: {_describe(exc)}")
        for key in bad:
            remove_quietly(self.workspace.chunk_path(key))
        self.ledger.requeue_chunks(bad, "damaged-file")
        return AssemblyError(
            f"{len(bad)} chunk(s) no longer match what was rendered ({bad[0][:12]}...);"
            " they are rendered again on the next run"
        )

    def _segments(
        self, jobs: list[UnitJob], lead_in_ms: int, pauses: list[int]
    ) -> list[audio.Segment]:
        return [segment for segment, _ident in self._named_segments(jobs, lead_in_ms, pauses)]

    def _named_segments(
        self, jobs: Sequence[UnitJob], lead_in_ms: int, pauses: Sequence[int]
    ) -> list[tuple[audio.Segment, str]]:
        """The master's segments, each with what decides its samples: a chunk's recorded
        sha256, "" for silence."""
        segments = [(audio.Segment(silence_s=lead_in_ms / 1000), "")] if lead_in_ms else []
        for job, pause_ms in zip(jobs, pauses, strict=False):
            segments.append((audio.Segment(path=self._chunk_path(job)), job.sha256 or ""))
            if pause_ms:
                segments.append((audio.Segment(silence_s=pause_ms / 1000), ""))
        return segments

    def _chunk_path(self, job: UnitJob) -> Path:
        if job.state != JobState.DONE or job.out_path is None:
            raise AssemblyError(f"job {job.key[:12]} is not rendered yet")
        path = self.ledger.resolve(job.out_path)
        if not path.exists():
            raise AssemblyError(f"chunk {path} is missing; the next run renders it again")
        return path

    # ------------------------------------------------------------------ sections as chunks arrive

    def streams_from_chunks(self, info: ManifestInfo, unit: int) -> list[str]:
        """The book formats whose stream for this unit is encoded from its chunk files, in
        sections as they arrive (sections.py), rather than from its master: a format cut in
        sections, for a unit whose master is only its chunks and silence (no mastering preset,
        which must measure the whole chapter first; no fades, no layers)."""
        spec = info.assembly
        meta = spec.units[unit]
        if preset(spec.master).masters or meta.layered or meta.fade_in_ms or meta.fade_out_ms:
            return []
        return [f for f in self._joined_formats(info) if streams.STREAM_FORMATS[f].sections]

    def encode_arrived_sections(self, info: ManifestInfo, unit: int) -> int:
        """Every section of the unit's streams that its leading run of done chunks decides,
        encoded unless it is on disk (the render calls this as chunks arrive); how many were
        encoded. What cannot be done now is left to the unit's own assembly."""
        formats = self.streams_from_chunks(info, unit)
        jobs = self.ledger.unit_jobs(info.id, unit) if formats else []
        done = next((n for n, job in enumerate(jobs) if job.state != JobState.DONE), len(jobs))
        if not done or done == len(jobs):  # a whole unit: its assembly makes its streams
            return 0
        if not self._may_close_section(info, unit, jobs[:done]):
            return 0
        layout = self._chunk_layout(info, jobs, done)
        made = 0
        for fmt in formats:
            if self._encoding(info, fmt).sample_rate not in (None, layout.rate):
                continue
            cuts = sections.cut(layout.pieces, fmt, layout.rate, streams.MIN_SECTION_S, whole=False)
            for section in cuts:
                try:
                    made += self._section(info, layout, section, fmt)[1]
                except sections.SectionMisfit:
                    break  # the unit's assembly finds it again and encodes from the master
            if cuts:  # the formats share one layout, and so their cuts
                self._cut_ms[(info.id, unit)] = round(cuts[-1].end * 1000 / layout.rate)
        return made

    def _may_close_section(self, info: ManifestInfo, unit: int, arrived: list[UnitJob]) -> bool:
        """Whether the arrived chunks may reach a section's length past the last cut this
        assembler made: from the ledger's durations, so that most arrivals cost one query and
        no chunk header (the assembly shares the coordinator's interpreter while it renders)."""
        if any(job.duration_ms is None for job in arrived):
            return True
        lead_in_ms, pauses = self._unit_silences(info, arrived)
        heard_ms = lead_in_ms + sum(job.duration_ms or 0 for job in arrived) + sum(pauses)
        # A second's slack: the durations are rounded to ms, the cut lands inside a pause.
        return (
            heard_ms - self._cut_ms.get((info.id, unit), 0) >= streams.MIN_SECTION_S * 1000 - 1000
        )

    def _stream_from_chunks(
        self, info: ManifestInfo, unit: int, fmt: str
    ) -> streams.ChapterStream | None:
        """The unit's `fmt` stream joined from its sections, those not encoded yet encoded at
        once, one per core; None where they cannot make it (the master's encode then does)."""
        jobs = self.ledger.unit_jobs(info.id, unit)
        for job in jobs:
            self._chunk_path(job)  # every chunk rendered and there, as its master would need
        encoding = self._encoding(info, fmt)
        key = stream_key(raw_master_key(info.assembly, unit, jobs), fmt, encoding)
        path = streams.stream_path(self.workspace.work_dir, key, fmt)
        found = streams.load_stream(path, fmt)
        if found is not None:
            return found
        layout = self._chunk_layout(info, jobs, len(jobs))
        if encoding.sample_rate not in (None, layout.rate):
            return None
        started = time.monotonic()
        cuts = sections.cut(layout.pieces, fmt, layout.rate, streams.MIN_SECTION_S, whole=True)
        try:
            with ThreadPoolExecutor(max(1, min(len(cuts), os.cpu_count() or 1))) as pool:
                parts = list(pool.map(lambda s: self._section(info, layout, s, fmt)[0], cuts))
        except (sections.SectionMisfit, soundfile.LibsndfileError, RuntimeError):
            return None  # a damaged chunk is found, and requeued, by the master's build
        stream = sections.join_sections(parts, path, fmt, self.owner)
        for part in parts:
            sections.remove_section(part.path)
            self._sections.pop(part.path, None)
        for piece in layout.pieces:  # the unit is done with: its cache entries go
            if piece.segment.path is not None:
                self._frames.pop((piece.segment.path, piece.ident, layout.rate), None)
        self._timed(fmt, round(layout.pieces[-1].end * 1000 / layout.rate), started)
        return stream

    def _section(
        self, info: ManifestInfo, layout: ChunkLayout, section: sections.Section, fmt: str
    ) -> tuple[streams.ChapterStream, bool]:
        """The section's stream, from the sections folder or encoded now (then True)."""
        encoding = self._encoding(info, fmt)
        shape = {"rate": layout.rate, "channels": layout.channels}
        key = sections.section_key(layout.pieces, section, fmt, encoding, **shape)
        if key in self._misfits:
            raise sections.SectionMisfit(f"section {key[:12]} did not fit", retryable=False)
        path = streams.stream_path(self.workspace.sections_dir, key, fmt)
        known = self._sections.get(path)  # asked again at every chunk that arrives after it
        found = known if known is not None and path.exists() else streams.load_stream(path, fmt)
        if found is not None:
            self._sections[path] = found
            return found, False
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            made = sections.encode_section(
                layout.pieces,
                section,
                path,
                fmt,
                encoding,
                owner=self.owner,
                cancel=self.cancel,
                **shape,
            )
        except sections.SectionMisfit:
            self._misfits.add(key)
            raise
        self._sections[path] = made
        return made, True

    def _chunk_layout(self, info: ManifestInfo, jobs: list[UnitJob], done: int) -> ChunkLayout:
        """The unit's first `done` chunks (all rendered) and the silences around them, placed
        as `_laid` places them, at the master's rate and channels (its first chunk's)."""
        probe = soundfile.info(str(self._chunk_path(jobs[0])))
        rate, channels = int(probe.samplerate), int(probe.channels)
        lead_in_ms, pauses = self._unit_silences(info, jobs)
        named = self._named_segments(jobs[:done], lead_in_ms, pauses[:done])
        pieces = sections.place(named, lambda segment, ident: self._frames_of(segment, ident, rate))
        return ChunkLayout(pieces, rate, channels)

    def _frames_of(self, segment: audio.Segment, ident: str, rate: int) -> int:
        if segment.path is None:
            return audio.segment_frames(segment, rate)
        key = (segment.path, ident, rate)
        if key not in self._frames:
            self._frames[key] = audio.segment_frames(segment, rate)
        return self._frames[key]

    # ------------------------------------------------------------------ the book

    def assemble_book(self, info: ManifestInfo) -> list[FileOutcome]:
        """The whole book in each book format (`BOOK_FORMATS`: the .m4b with a chapter mark per
        chapter, the book .mp3 with an ID3 CHAP frame per chapter under one CTOC), or one file
        per part of a book split by `parts:` (its chapters' marks from 0, tagged as part N of
        M), each its own outcome; [] if the book has none."""
        spec = info.assembly
        planned = [f for f in planned_outputs(spec) if f.unit is None and not f.subtitle]
        if not planned:
            return []
        groups = spec.part_groups()
        outcomes = []
        for fmt in BOOK_FORMATS:
            books = [f for f in planned if f.fmt == fmt]
            if books:
                outcomes += self._book_files(info, books, groups)
        return outcomes

    def _book_files(
        self, info: ManifestInfo, books: list[OutputFile], groups: list[list[int]]
    ) -> list[FileOutcome]:
        """One book format's files, one per group of chapters (the whole book, or its parts)."""
        spec = info.assembly
        outcomes = []
        for book, units in zip(books, groups, strict=True):
            try:
                masters = [self.master(info, unit) for unit in units]
                joined = [self.chapter_stream(info, unit, book.fmt) for unit in units]
            except Interrupted:
                raise
            except Exception as exc:
                outcomes.append(self._failed(info, book, exc))
                continue
            titles = [spec.units[unit].title for unit in units]
            marks = streams.book_marks(titles, joined, book.fmt)
            tags = _book_tags(spec, book.part, len(groups))
            outcomes.append(self._publish(info, book, masters, tags, marks, joined))
        return outcomes

    def oversized_parts(self, info: ManifestInfo) -> list[str]:
        """The book's parts on disk that came out over `parts:`'s limit (they were planned
        from estimates): each is written all the same, and named here for a warning."""
        parts = info.assembly.parts
        if parts is None:
            return []
        problems = []
        for book in planned_outputs(info.assembly):
            if book.part is None or book.fmt not in BOOK_FORMATS or not book.path.is_file():
                continue
            record = self.ledger.output(str(book.path))
            size = book.path.stat().st_size
            if parts.max_bytes is not None and size > parts.max_bytes:
                problems.append(
                    f"{book.path} is {size} bytes, over parts' max_bytes {parts.max_bytes}"
                    " (planned from estimates)"
                )
            length_ms = record.duration_ms if record is not None else None
            limit_ms = parts.max_ms
            if limit_ms is not None and length_ms is not None and length_ms > limit_ms:
                problems.append(
                    f"{book.path} runs {length_ms / 3_600_000:.3f} h, over parts' max_hours"
                    f" {limit_ms / 3_600_000:g} (planned from estimates)"
                )
        return problems

    # ------------------------------------------------------------------ publishing

    def _publish(
        self,
        info: ManifestInfo,
        file: OutputFile,
        masters: list[Master],
        tags: Tags,
        chapters: list[audio.ChapterMark] | None,
        joined: list[streams.ChapterStream] | None = None,
    ) -> FileOutcome:
        """The file from `masters`: encoded from them, or, given their `joined` streams, those
        copied into it."""
        encoding = self._encoding(info, file.fmt)
        inputs = output_key(
            [m.inputs_sha256 for m in masters],
            file.fmt,
            tags,
            info.assembly.cover_sha256,
            chapters,
            encoding,
            joined=joined is not None,
        )
        if joined is not None:
            return self._made(
                info,
                file,
                inputs,
                chapters[-1].end_ms if chapters else 0,
                lambda: self._join(file, joined, tags, chapters or [], inputs),
            )
        return self._made(
            info,
            file,
            inputs,
            sum(m.duration_ms for m in masters),
            lambda: self._encode(file, masters, tags, chapters, inputs, encoding),
        )

    def _made(
        self,
        info: ManifestInfo,
        file: OutputFile,
        inputs: str,
        length_ms: int,
        make: Callable[[], None],
        content: bytes | None = None,
    ) -> FileOutcome:
        """The file as it is if current, else made by `make` and recorded; an error fails this
        file alone."""
        try:
            if self._current(info, file, inputs, length_ms, content):
                return FileOutcome(file.path, written=False)
            make()
            self._record(info, file, inputs, length_ms)
        except Interrupted:
            raise
        except Exception as exc:
            return self._failed(info, file, exc)
        return FileOutcome(file.path, written=True)

    def _current(
        self,
        info: ManifestInfo,
        file: OutputFile,
        inputs: str,
        length_ms: int,
        content: bytes | None = None,
    ) -> bool:
        """True if the file on disk is already this output. Raises if the path holds something
        songbatch must not replace. `content`: a text file's bytes (it has no tag to say whose
        it is: unrecorded, it is taken as ours only if it is exactly what would be written)."""
        final = file.path
        if final.is_dir():
            raise AssemblyError(f"{final} is a folder: move it away so the file can be written")
        record = self.ledger.output(str(final))
        if record is not None:
            check = check_file(final, record.sha256, record.stamp)
            if check.state is FileState.OK and record.inputs_sha256 == inputs:
                if check.stamp is not None:
                    self.ledger.restamp_output(str(final), check.stamp)
                return record.manifest_id == info.id or self._record(info, file, inputs, length_ms)
            return False  # ours, but stale, damaged or gone: rebuilt
        if not (final.exists() or final.is_symlink()):
            return False
        if content is not None and _holds(final, content):
            return self._record(info, file, inputs, length_ms)
        origin = None if content is not None else read_origin(final)
        if origin is None or origin.partition(":")[0] != self.owner:
            raise AssemblyError(
                f"{final} exists and songbatch did not write it: move it away or delete it,"
                " then run again"
            )
        # Written by this workspace under a ledger that was lost: keep it if it is current.
        return origin.partition(":")[2] == inputs and self._record(info, file, inputs, length_ms)

    def _record(self, info: ManifestInfo, file: OutputFile, inputs: str, length_ms: int) -> bool:
        """The file now at the final path is this manifest's output, as it is."""
        self.ledger.record_output(
            path=str(file.path),
            manifest_id=info.id,
            unit=file.unit,
            fmt=file.fmt,
            inputs_sha256=inputs,
            sha256=file_sha256(file.path),
            duration_ms=length_ms,
            stamp=FileStamp.of(file.path),
        )
        return True

    def _encode(
        self,
        file: OutputFile,
        masters: list[Master],
        tags: Tags,
        chapters: list[audio.ChapterMark] | None,
        inputs: str,
        encoding: Encoding,
    ) -> None:
        def write(tmp: Path, tags: Tags) -> None:
            audio.encode(
                [m.path for m in masters],
                tmp,
                file.fmt,  # type: ignore[arg-type]
                tags=tags,
                cover=tags.cover,
                chapters=chapters,
                bitrate=f"{encoding.bitrate_kbps}k" if encoding.bitrate_kbps else None,
                sample_rate=encoding.sample_rate,
                channels=encoding.channels,
                mode=encoding.mode,
                cancel=self.cancel,
            )

        self._write_audio(file, inputs, tags, write, file.fmt, sum(m.duration_ms for m in masters))

    def _join(
        self,
        file: OutputFile,
        joined: list[streams.ChapterStream],
        tags: Tags,
        chapters: list[audio.ChapterMark],
        inputs: str,
    ) -> None:
        def write(tmp: Path, tags: Tags) -> None:
            streams.join_streams(
                joined, tmp, file.fmt, tags=tags, chapters=chapters, cancel=self.cancel
            )

        length_ms = chapters[-1].end_ms if chapters else 0
        self._write_audio(file, inputs, tags, write, f"{file.fmt} join", length_ms)

    def _write_audio(
        self,
        file: OutputFile,
        inputs: str,
        tags: Tags,
        write: Callable[[Path, Tags], None],
        timed_as: str,
        audio_ms: int,
    ) -> None:
        """`write` into a temp file beside the target, its tags naming this workspace and the
        inputs; sync, replace; time it."""
        file.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(file.path, self.owner)
        started = time.monotonic()
        try:
            pause_point("assembly", self.cancel)
            write(tmp, Tags(**{**vars(tags), "origin": f"{self.owner}:{inputs}"}))
            make_public(tmp)
            replace_durably(tmp, file.path)
        finally:
            remove_quietly(tmp)
        self._timed(timed_as, audio_ms, started)

    # ------------------------------------------------------------------ subtitles

    def _unit_subtitles(
        self, info: ManifestInfo, unit: int, files: list[OutputFile]
    ) -> list[FileOutcome]:
        if not files:
            return []
        try:
            cues, length_ms = self._chapter_cues(info, unit)
        except Interrupted:
            raise
        except Exception as exc:
            return [self._failed(info, file, exc) for file in files]
        return [self._publish_subtitles(info, file, cues, length_ms) for file in files]

    def book_subtitles(self, info: ManifestInfo) -> list[FileOutcome]:
        """The book's .srt/.vtt beside its .m4b (or each part's): every chapter's cues from
        where its chapter is heard in the book file (the .m4b's timeline, else the book
        .mp3's, else the masters' back to back)."""
        spec = info.assembly
        files = [f for f in planned_outputs(spec) if f.unit is None and f.subtitle]
        if not files:
            return []
        stems = book_stems(spec)
        outcomes: list[FileOutcome] = []
        for (part, _stem), units in zip(stems, spec.part_groups(), strict=True):
            mine = [f for f in files if f.part == part]
            try:
                masters = [self.master(info, unit) for unit in units]
                timeline = self._joined_formats(info)[0]  # the .m4b's if there is one
                heard_ms = self._book_timeline(info, units, timeline)
                chapters = [
                    (start, subtitles.clamp(self._chapter_cues(info, unit)[0], m.duration_ms))
                    for unit, start, m in zip(units, heard_ms, masters, strict=True)
                ]
            except Interrupted:
                raise
            except Exception as exc:
                outcomes += [self._failed(info, file, exc) for file in mine]
                continue
            cues = subtitles.book_cues(chapters)
            length_ms = heard_ms[-1] + masters[-1].duration_ms if masters else 0
            outcomes += [self._publish_subtitles(info, file, cues, length_ms) for file in mine]
        return outcomes

    def _book_timeline(self, info: ManifestInfo, units: list[int], fmt: str) -> list[int]:
        """Where each of these chapters' audio is heard in the book file of them in `fmt`, in
        ms: its chapter mark, but for the first chapter's priming."""
        joined = [self.chapter_stream(info, unit, fmt) for unit in units]
        rate = joined[0].sample_rate
        return [round(sample * 1000 / rate) for sample in streams.heard_at(joined, fmt)]

    def _chapter_cues(self, info: ManifestInfo, unit: int) -> tuple[list[subtitles.Cue], int]:
        """The unit's cues and length, timed as `_laid` lays the audio out (the same
        held lead-in and last pause), each chunk's text as written (`_job_texts`)."""
        jobs = self.ledger.unit_jobs(info.id, unit)
        meta = info.assembly.units[unit]
        if meta.layered:  # a line per cue, where the mix places it (the .lrc's)
            placed = self._layout(jobs, meta)
            length_ms = round(placed.total * 1000 / placed.rate)
            return layers.lyric_cues(placed, self._job_texts(jobs)), length_ms
        lead_in_ms, pauses = self._unit_silences(info, jobs)
        texts = self._job_texts(jobs)
        chunks: list[tuple[str, int, int, dict[str, Any] | None]] = []
        for job, pause_ms, text in zip(jobs, pauses, texts, strict=True):
            row = self.ledger.job(job.key)
            if row is None or job.state != JobState.DONE:
                raise AssemblyError(f"job {job.key[:12]} is not rendered yet")
            duration_ms = job.duration_ms
            if duration_ms is None:
                duration_ms = audio.audio_duration_ms(self._chunk_path(job))
            info_value = json.loads(row["info"]) if row.get("info") else None
            chunks.append(
                (
                    text,
                    duration_ms,
                    pause_ms,
                    info_value if isinstance(info_value, dict) else None,
                )
            )
        timed, length_ms = subtitles.place_chunks(lead_in_ms, chunks)
        return subtitles.clamp(subtitles.chapter_cues(timed), length_ms), length_ms

    def _job_texts(self, jobs: list[UnitJob]) -> list[str]:
        """Each job's words as the book or the lyrics wrote them (its plan row's), else as
        its request has them (a music job's prompt, a row planned before rows kept them)."""
        requests = self.ledger.job_requests([job.key for job in jobs])
        spoken = {key: request.text for key, request in requests.items()}
        return [spoken.get(job.key, "") if job.written is None else job.written for job in jobs]

    def _encoding(self, info: ManifestInfo, fmt: str) -> Encoding:
        return spec_encoding(info.assembly, fmt)

    def _publish_subtitles(
        self, info: ManifestInfo, file: OutputFile, cues: list[subtitles.Cue], length_ms: int
    ) -> FileOutcome:
        """A subtitle file is an output like the audio: its inputs are its cue list."""
        data = subtitles.render(file.fmt, cues).encode("utf-8")
        inputs = _digest(subtitles.digest_fields(file.fmt, cues))
        return self._made(
            info, file, inputs, length_ms, lambda: self._write(file, data), content=data
        )

    def _write(self, file: OutputFile, data: bytes) -> None:
        """Write to a temp file beside the target, sync, replace."""
        file.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(file.path, self.owner)
        try:
            tmp.write_bytes(data)
            fsync_file(tmp)
            make_public(tmp)
            replace_durably(tmp, file.path)
        finally:
            remove_quietly(tmp)

    def _failed(self, info: ManifestInfo, file: OutputFile, exc: BaseException) -> FileOutcome:
        error = _describe(exc)
        self.ledger.record_output_failure(
            path=str(file.path),
            manifest_id=info.id,
            unit=file.unit,
            fmt=file.fmt,
            error=error,
            run_id=self.run_id,
        )
        return FileOutcome(file.path, written=False, error=error)

    # ------------------------------------------------------------------ outputs that went

    def prune(self, info: ManifestInfo) -> Pruned:
        """Files songbatch wrote for chapters, tracks or formats the plan no longer has: removed
        if they are still as written; a file changed since is the person's now, and stays."""
        current = planned_outputs(info.assembly)
        recorded = {record.path: record for record in self.ledger.outputs(info.id)}
        removed: list[Path] = []
        kept: list[Path] = []
        for path_text in stale_outputs(recorded, current):
            record, path = recorded[path_text], Path(path_text)
            state = check_file(path, record.sha256, record.stamp).state
            if state is FileState.OK:
                remove_quietly(path)
                removed.append(path)
                self._remove_empty_folder(path.parent)
            elif state is FileState.DAMAGED and path.exists():
                kept.append(path)
            self.ledger.forget_output(path_text)
        self.ledger.forget_output_failures(info.id, [str(f.path) for f in current])
        return Pruned(removed, kept)

    def _remove_empty_folder(self, folder: Path) -> None:
        """Only a folder songbatch made by default (outputs/<book>), and only when empty."""
        if folder.parent != self.workspace.root / "outputs":
            return
        with contextlib.suppress(OSError):  # not empty: the person's files, or other books
            folder.rmdir()
