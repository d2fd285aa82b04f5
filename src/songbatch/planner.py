"""Manifest + profile -> job rows and an assembly spec. Pure: writing is `commit_plan`'s job.

A job's key is the sha256 of everything that shapes its audio (text, voice file hash, engine,
model, params, seed, duration), so the same inputs are never rendered twice, across manifests too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from songbatch import text as textlib
from songbatch.assemblyspec import (
    AssemblySpec,
    LayerSpec,
    MusicLayerSpec,
    PartsSpec,
    SpecTags,
    SpeechLayerSpec,
    UnitSpec,
)
from songbatch.audio import _default_bitrate
from songbatch.engines import phoneme_notation
from songbatch.engines.base import EngineSpec, JobRequest, Kind
from songbatch.errors import InputError
from songbatch.fsutil import file_sha256, remove_quietly, replace_durably, temp_sibling
from songbatch.layers import fitted_bed_ms
from songbatch.ledger import JobRow, Ledger, ManifestRecord, PlanDiff, PlanRow
from songbatch.manifest import (
    Album,
    Audiobook,
    Chapter,
    LoadedManifest,
    MusicLayer,
    SpeechLayer,
    Track,
    safe_filename,
)
from songbatch.normalise import Voicing, voicing
from songbatch.outputs import BOOK_FORMATS, book_stems, chapter_formats
from songbatch.plancheck import check_manifest_inputs, check_remote_inputs
from songbatch.presets import spec_encoding
from songbatch.profiles import Profile
from songbatch.workspace import Workspace

KEY_VERSION = 1
CHAPTER_LEAD_IN_MS = 500


@dataclass(frozen=True)
class StoredFile:
    """A file the plan depends on (a voice clip, a cover), copied into the workspace at commit
    under its content hash, so a job's inputs never change under it."""

    sha256: str
    source: Path
    target: Path


@dataclass
class Plan:
    record: ManifestRecord
    jobs: list[JobRow]
    rows: list[PlanRow]
    stored: list[StoredFile]

    @property
    def chars(self) -> int:
        return sum(job.chars for job in self.jobs)

    @property
    def est_ms(self) -> int:
        """Estimated audio length: every planned job plus the pauses between them."""
        by_key = {job.key: job.est_ms for job in self.jobs}
        return sum(by_key[row.key] + row.pause_after_ms for row in self.rows)


def job_key(fields: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"v": KEY_VERSION, **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def plan_manifest(loaded: LoadedManifest, profile: Profile, workspace: Workspace) -> Plan:
    """Raises ManifestError/ProfileError (file, line, field) for anything the profile's engines
    cannot take, before a single row exists."""
    check_manifest_inputs(loaded, profile)
    manifest = loaded.manifest
    stored: list[StoredFile] = []
    if isinstance(manifest, Audiobook):
        jobs, rows, voices = _plan_book(manifest, profile.engine_spec("speech"), profile)
        stored += [StoredFile(sha, path, workspace.voice_path(sha)) for sha, path in voices.items()]
        units = [UnitSpec(i, ch.title, ch.file) for i, ch in enumerate(manifest.chapters)]
    else:
        jobs, rows, units, voices = _plan_album(manifest, profile)
        stored += [StoredFile(sha, path, workspace.voice_path(sha)) for sha, path in voices.items()]
    if profile.remote:
        check_remote_inputs(loaded, profile, jobs, rows)
    cover = None
    if manifest.cover is not None:
        sha = file_sha256(manifest.cover)
        cover = StoredFile(sha, manifest.cover, workspace.cover_path(sha))
        stored.append(cover)
    assembly = _assembly_spec(loaded, workspace, units, profile, cover)
    if isinstance(manifest, Audiobook) and manifest.parts is not None:
        # Only a book that is split carries the grouping: every other spec stays as it was.
        parts = _parts(manifest, assembly, _unit_estimates(jobs, rows, len(units)))
        if len(parts.groups) > 1:
            assembly = dataclasses.replace(assembly, parts=parts)
            _check_part_names(loaded, assembly)
    if isinstance(manifest, Audiobook):
        _check_book_mp3_names(loaded, assembly)
    record = ManifestRecord(
        path=str(loaded.path),
        kind=manifest.kind,
        title=manifest.title,
        slug=loaded.slug,
        source_sha256=loaded.source_sha256,
        profile=profile.name,
        plan_sha256=job_key(
            {"assembly": assembly.to_dict(), "rows": [list(_row(r)) for r in rows]}
        ),
        assembly=assembly,
    )
    return Plan(record=record, jobs=_unique(jobs), rows=rows, stored=stored)


@dataclass(frozen=True)
class SpokenChunk:
    """One job of a chapter as its engine gets it: the voiced text and the pause after it."""

    text: str
    pause_after_ms: int


def spoken_chapter(
    loaded: LoadedManifest, plan: Plan, number: int
) -> tuple[str, list[SpokenChunk]]:
    """The title and jobs of chapter `number` (from 1, counting the chapters the person
    wrote, not the credits songbatch adds), in order: `plan --show-text`."""
    book = loaded.manifest
    if not isinstance(book, Audiobook):
        raise InputError(f"{loaded.path}: --show-text is for audiobooks; this is an album")
    written = [i for i, chapter in enumerate(book.chapters) if chapter.credits is None]
    if not 1 <= number <= len(written):
        raise InputError(
            f"--show-text {number}: {loaded.path} has {len(written)} chapter(s),"
            f" 1 to {len(written)}"
        )
    unit = written[number - 1]
    by_key = {job.key: job for job in plan.jobs}
    rows = sorted((row for row in plan.rows if row.unit == unit), key=lambda row: row.seq)
    chunks = [SpokenChunk(by_key[r.key].request.text, r.pause_after_ms) for r in rows]
    return book.chapters[unit].title, chunks


def commit_plan(ledger: Ledger, plan: Plan, workspace: Workspace) -> PlanDiff:
    """Copy voices and covers into the content-keyed store, then record the plan in one
    transaction."""
    for item in plan.stored:
        _store(item, workspace.owner_id())
    return ledger.apply_plan(plan.record, plan.jobs, plan.rows)


def preview_plan(ledger: Ledger, plan: Plan) -> PlanDiff:
    return ledger.diff_plan(plan.record, plan.rows)


def job_kinds(manifest: Audiobook | Album) -> list[Kind]:
    """The kinds of job a manifest makes, so the engines a run loads: a book speaks; an album
    plays, and speaks too where a track has a spoken layer."""
    if isinstance(manifest, Audiobook):
        return ["speech"]
    tracks = manifest.tracks
    spoken = any(isinstance(layer, SpeechLayer) for track in tracks for layer in track.layers)
    return ["music", "speech"] if spoken else ["music"]


# ---------------------------------------------------------------------- audiobooks


def _plan_book(
    book: Audiobook, spec: EngineSpec, profile: Profile
) -> tuple[list[JobRow], list[PlanRow], dict[str, Path]]:
    jobs: list[JobRow] = []
    rows: list[PlanRow] = []
    voices: dict[str, Path] = {}
    chars_per_second = profile.speech.chars_per_second
    spoken = book_voicing(book, spec)
    for unit, chapter in enumerate(book.chapters):
        voice_sha = None
        if chapter.voice.reference is not None:
            voice_sha = file_sha256(chapter.voice.reference)
            voices[voice_sha] = chapter.voice.reference
        for seq, piece in enumerate(_chapter_chunks(book, chapter, spec, spoken)):
            job = _speech_job(spec, book, chapter, piece.text, voice_sha, chars_per_second)
            jobs.append(job)
            rows.append(PlanRow(unit, seq, job.key, piece.pause_after_ms, piece.written))
    return jobs, rows, voices


def book_voicing(book: Audiobook, spec: EngineSpec) -> Voicing:
    """Written text to what `spec`'s engine reads: the book's lexicon (phonemes where the
    engine takes them), then its language's normalisation unless `normalise: false`. No
    version of it enters the job key: the key holds the text itself, so a change of rules
    re-renders exactly the chunks whose words it changes, and keeps every other key."""
    return voicing(
        book.language,
        normalise=book.normalise,
        lexicon=book.lexicon,
        notation=phoneme_notation(spec.engine),
    )


@dataclass(frozen=True)
class _Piece:
    """A planned chunk: what the engine reads, the pause after it, and the written words it
    says where they differ (None where they are the same, so the row falls back to the text)."""

    text: str
    pause_after_ms: int
    written: str | None


def _voiced_chunks(
    written: str, say: Voicing, max_chars: int, *, by_sentence: bool = False
) -> list[tuple[textlib.Chunk, str | None]]:
    """`written` said by `say` and chunked, each chunk with the written words it came from
    (whitespace tidied), None where they are the chunk's own. Traced through the voicing's
    edits and the chunker's clean-up, so a chunk of "doctor Smith paid twelve dollars" says
    it came from "Dr. Smith paid $12"; the job still holds only the spoken text."""
    voiced, from_written = say.mapped(written)
    tidy, from_voiced = textlib.normalize_mapped(voiced)
    found = []
    for chunk in textlib.chunk_text(tidy, max_chars, by_sentence=by_sentence):
        start, end = from_written.source_span(*from_voiced.source_span(chunk.start, chunk.end))
        words = " ".join(written[start:end].split())
        # "" where the chunk only goes on saying a rewrite the chunk before it holds.
        found.append((chunk, None if words == chunk.text else words))
    return found


def _chapter_chunks(
    book: Audiobook, chapter: Chapter, spec: EngineSpec, spoken: Voicing
) -> list[_Piece]:
    pauses = chapter.pauses
    sentence, paragraph = round(pauses.sentence * 1000), round(pauses.paragraph * 1000)
    pieces: list[_Piece] = []
    # A text that opens with its own heading ("CHAPTER I." then the text) already says it.
    # Credits have no heading: "Opening Credits" names their file and chapter mark only.
    heading = book.speak_titles and chapter.credits is None
    if heading and not textlib.starts_with_title(chapter.text, chapter.title):
        title = _voiced_chunks(textlib.normalize(chapter.title), spoken, spec.max_chars)
        pieces.extend(_Piece(c.text, paragraph, words) for c, words in title)
    # An engine cannot pause inside one call, so a sentence pause the manifest asks for means
    # one sentence per chunk, with the pause after each. A book that does not set it keeps
    # sentences packed into chunks (and its job keys), pausing only between chunks.
    by_sentence = "sentence" in pauses.model_fields_set and sentence > 0
    # Chunked after voicing: the limit holds for the words the engine reads ("$1,250,000"
    # is 30 characters said), and an abbreviation said in full cannot end a sentence.
    text = textlib.normalize(chapter.text)
    for chunk, words in _voiced_chunks(text, spoken, spec.max_chars, by_sentence=by_sentence):
        if chunk.paragraph_end:
            pause = paragraph
        elif by_sentence and not chunk.sentence_end:
            pause = 0  # the pieces of one over-long sentence run on
        else:
            pause = sentence
        pieces.append(_Piece(chunk.text, pause, words))
    if not pieces:  # manifest.py refuses such chapters; never an IndexError here
        raise InputError(f"chapter {chapter.title!r} (line {chapter.line}) has nothing to speak")
    # The chapter pause closes the chapter file; in the m4b it is the gap before the next one.
    pieces[-1] = _paused(pieces[-1], round(pauses.chapter * 1000))
    return pieces


def _speech_job(
    spec: EngineSpec,
    book: Audiobook,
    chapter: Chapter,
    text: str,
    voice_sha: str | None,
    chars_per_second: float,
) -> JobRow:
    # The book's language reaches every engine (voice choice, multilingual models) unless the
    # profile or the voice pins one.
    params = {"language": book.language, **spec.params, **chapter.voice.params}
    return _spoken_job(spec, text, params, voice_sha, chapter.seed, chars_per_second)


def _spoken_job(
    spec: EngineSpec,
    text: str,
    params: dict[str, Any],
    voice_sha: str | None,
    seed: int,
    chars_per_second: float,
) -> JobRow:
    """A speech job (a book's chunk, a spoken layer's): the same words, voice, params and
    seed are one job wherever they are said."""
    key = job_key(
        {
            "kind": "speech",
            "engine": spec.engine,
            "model": spec.model,
            "text": text,
            "voice_sha256": voice_sha,
            "params": params,
            "seed": seed,
        }
    )
    request = JobRequest("speech", text, seed, params, voice=voice_sha)
    est_ms = round(textlib.estimate_seconds(len(text), chars_per_second) * 1000)
    return JobRow(key, "speech", spec.engine, spec.model, request, len(text), est_ms)


# Parts are planned to this share of their limit: the real audio may run longer than the
# estimate (speaking rate, a preset's held silences, AAC framing and the container's tables).
PARTS_MARGIN = 0.95
# MP4's sample tables and atoms beside the AAC frames (4-8 bytes a frame: about 1-2 % at
# speech bitrates), plus the tags.
_M4B_OVERHEAD = 0.02
_M4B_TAGS_BYTES = 64 * 1024


def _unit_estimates(jobs: list[JobRow], rows: list[PlanRow], units: int) -> list[int]:
    """Each chapter's estimated length in ms: the lead-in, its jobs and the pauses after each,
    as the master lays them out."""
    by_key = {job.key: job.est_ms for job in jobs}
    totals = [CHAPTER_LEAD_IN_MS] * units
    for row in rows:
        totals[row.unit] += by_key[row.key] + row.pause_after_ms
    return totals


def _parts(book: Audiobook, assembly: AssemblySpec, est_ms: list[int]) -> PartsSpec:
    """Which chapters go in which part of the whole book (.m4b, book .mp3), decided now from
    the estimates so that the plan names every file it makes. Chapters fill a part in order
    while its estimate stays within PARTS_MARGIN of the limit; a chapter over the limit alone
    is a part of its own."""
    parts = book.parts
    assert parts is not None
    cover_bytes = 0 if book.cover is None else book.cover.stat().st_size
    max_ms = max_bytes = None
    if parts.max_hours is not None:
        max_ms = round(parts.max_hours * 3_600_000)
        budget = max_ms * PARTS_MARGIN

        def cost(ms: int) -> float:
            return ms
    else:
        assert parts.max_bytes is not None
        max_bytes = parts.max_bytes
        budget = parts.max_bytes * PARTS_MARGIN - cover_bytes - _M4B_TAGS_BYTES
        bytes_per_ms = _book_kbps(assembly) * 1000 / 8 / 1000 * (1 + _M4B_OVERHEAD)

        def cost(ms: int) -> float:
            return ms * bytes_per_ms

    groups: list[list[int]] = []
    used = 0.0
    for unit, ms in enumerate(est_ms):
        if groups and used + cost(ms) <= budget:
            groups[-1].append(unit)
            used += cost(ms)
        else:
            groups.append([unit])
            used = cost(ms)
    return PartsSpec(tuple(tuple(group) for group in groups), max_ms, max_bytes)


def _check_part_names(loaded: LoadedManifest, assembly: AssemblySpec) -> None:
    """A chapter file named like a part would share that part's subtitle file (the audio
    differs: chapters are never m4b), as manifest.py refuses for the whole book's name."""
    if not assembly.subtitles or not chapter_formats(assembly.formats):
        return
    parts = {stem.casefold(): n for n, stem in book_stems(assembly)}
    for unit in assembly.units:
        part = parts.get(unit.file.casefold())
        if part is not None:
            raise InputError(
                f"{loaded.outputs_where}chapter {unit.unit + 1}'s file name"
                f" {unit.file!r} is part {part}'s: its subtitles and the part's would be one"
                " file; give the chapter a different `file:`"
            )


def _check_book_mp3_names(loaded: LoadedManifest, assembly: AssemblySpec) -> None:
    """With both `mp3` and `mp3-book`, a chapter file named like the book (or one of its
    parts) would be the book's .mp3: refused, as for the subtitles."""
    if not {"mp3", "mp3-book"} <= set(assembly.formats):
        return
    stems = {stem.casefold(): part for part, stem in book_stems(assembly)}
    for unit in assembly.units:
        stem = unit.file
        if stem.casefold() not in stems:
            continue
        part = stems[stem.casefold()]
        whose = "the book's" if part is None else f"part {part}'s"
        raise InputError(
            f"{loaded.outputs_where}chapter {unit.unit + 1}'s file name {stem!r} is"
            f" {whose}: its .mp3 and the whole book's (mp3-book) would be one file; give the"
            " chapter a different `file:`"
        )


def _book_kbps(assembly: AssemblySpec) -> int:
    """The highest bitrate of the whole book's formats (the .m4b, the book .mp3): one
    grouping splits both, so the larger file sets it."""
    return max(_kbps(assembly, fmt) for fmt in BOOK_FORMATS if fmt in assembly.formats)


def _kbps(assembly: AssemblySpec, fmt: str) -> int:
    """A format's bitrate: the manifest's `encoding:` or its preset's, else the format's
    default for the channels they set, else for stereo (the larger: the masters' channels are
    only known once rendered)."""
    encoding = spec_encoding(assembly, fmt)
    if encoding.bitrate_kbps:
        return encoding.bitrate_kbps
    rate = _default_bitrate(fmt, encoding.channels or 2)
    assert rate is not None
    return int(rate.rstrip("k"))


# ---------------------------------------------------------------------- albums


def _music_specs(profile: Profile) -> tuple[EngineSpec, EngineSpec]:
    """The music engine for tracks without lyrics, and for songs with them: a remote profile
    may send songs to another model, which must then be part of their keys."""
    spec = profile.engine_spec("music")
    lyrics_model = profile.replicate.lyrics_model if profile.replicate else None
    return spec, dataclasses.replace(spec, model=lyrics_model) if lyrics_model else spec


def _plan_album(
    album: Album, profile: Profile
) -> tuple[list[JobRow], list[PlanRow], list[UnitSpec], dict[str, Path]]:
    """The album's jobs, plan rows and units, and the voice clips its spoken layers use."""
    specs = _music_specs(profile)
    jobs: list[JobRow] = []
    rows: list[PlanRow] = []
    units: list[UnitSpec] = []
    voices: dict[str, Path] = {}
    for unit, track in enumerate(album.tracks):
        meta = _track_unit(unit, track)
        if track.layers:
            layered = _plan_layers(track, unit, profile)
            jobs += layered.jobs
            rows += layered.rows
            voices |= layered.voices
            meta = dataclasses.replace(meta, layers=layered.layers, min_ms=layered.min_ms)
        else:
            job = _music_job(specs[1] if track.lyrics else specs[0], track)
            jobs.append(job)
            rows.append(PlanRow(unit=unit, seq=0, key=job.key, pause_after_ms=0))
        units.append(meta)
    return jobs, rows, units, voices


def _music_job(spec: EngineSpec, track: Track) -> JobRow:
    params = {**spec.params, **track.params}
    duration_ms = round(track.duration * 1000)
    return _music_request(spec, track.prompt, track.lyrics, duration_ms, params, track.seed)


def _music_request(
    spec: EngineSpec,
    prompt: str,
    lyrics: str | None,
    duration_ms: int,
    params: dict[str, Any],
    seed: int,
) -> JobRow:
    fields = {
        "kind": "music",
        "engine": spec.engine,
        "model": spec.model,
        "prompt": prompt,
        "lyrics": lyrics,
        "duration_ms": duration_ms,
        "params": params,
        "seed": seed,
    }
    request = JobRequest(
        "music", prompt, seed, params, lyrics=lyrics, duration_s=duration_ms / 1000
    )
    chars = len(prompt) + len(lyrics or "")
    return JobRow(job_key(fields), "music", spec.engine, spec.model, request, chars, duration_ms)


@dataclass
class _Layered:
    """A layered track's part of the plan: its jobs and rows (every layer's, in the order
    written), the voice clips they use, and the `layers` and `min_ms` its unit carries for
    assembly."""

    jobs: list[JobRow]
    rows: list[PlanRow]
    voices: dict[str, Path]
    layers: tuple[LayerSpec, ...]
    min_ms: int


def _plan_layers(track: Track, unit: int, profile: Profile) -> _Layered:
    """Each spoken layer's chunks as speech jobs, each music layer as one music job as long
    as the voices are estimated to need (layers.fitted_bed_ms), unless it sets `duration`."""
    speech = profile.engine_spec("speech")
    spoken: dict[int, list[tuple[JobRow, _Piece, bool]]] = {}
    voices: dict[str, Path] = {}
    voice_ends: list[int] = []
    for index, layer in enumerate(track.layers):
        if not isinstance(layer, SpeechLayer):
            continue
        voice_sha = None
        if layer.voice.reference is not None:
            voice_sha = file_sha256(layer.voice.reference)
            voices[voice_sha] = layer.voice.reference
        params = {"language": layer.language, **speech.params, **layer.voice.params}
        cps = profile.speech.chars_per_second
        # Said as a book's text is (numbers, dates... in words), for the engine it goes to.
        say = voicing(layer.language, normalise=True, notation=phoneme_notation(speech.engine))
        spoken[index] = [
            (_spoken_job(speech, piece.text, params, voice_sha, layer.seed, cps), piece, opens)
            for piece, opens in _layer_chunks(layer, speech.max_chars, say)
        ]
        said = sum(job.est_ms + piece.pause_after_ms for job, piece, _ in spoken[index])
        voice_ends.append(round(layer.start * 1000) + said + round(layer.tail * 1000))
    min_ms = round(track.duration * 1000)
    bed_ms = fitted_bed_ms(voice_ends, min_ms)
    jobs: list[JobRow] = []
    rows: list[PlanRow] = []
    layers: list[LayerSpec] = []
    for index, layer in enumerate(track.layers):
        first = len(rows)
        if isinstance(layer, MusicLayer):
            duration_ms = bed_ms if layer.duration is None else round(layer.duration * 1000)
            job = _layer_music_job(profile, layer, duration_ms)
            jobs.append(job)
            rows.append(PlanRow(unit=unit, seq=first, key=job.key, pause_after_ms=0))
            layers.append(_music_layer_meta(layer, first))
            continue
        lines = []
        for job, piece, opens_line in spoken[index]:
            if opens_line:
                lines.append(len(rows))
            jobs.append(job)
            rows.append(PlanRow(unit, len(rows), job.key, piece.pause_after_ms, piece.written))
        layers.append(_speech_layer_meta(layer, first, len(rows), lines))
    return _Layered(jobs, rows, voices, tuple(layers), min_ms)


def _layer_music_job(profile: Profile, layer: MusicLayer, duration_ms: int) -> JobRow:
    spec = profile.engine_spec("music")
    params = {**spec.params, **layer.params}
    return _music_request(spec, layer.prompt, None, duration_ms, params, layer.seed)


def _music_layer_meta(layer: MusicLayer, seq: int) -> MusicLayerSpec:
    return MusicLayerSpec((seq, seq + 1), layer.gain_db, layer.duck_db)


def _speech_layer_meta(
    layer: SpeechLayer, first: int, stop: int, lines: list[int]
) -> SpeechLayerSpec:
    start_ms, tail_ms = round(layer.start * 1000), round(layer.tail * 1000)
    return SpeechLayerSpec((first, stop), layer.gain_db, start_ms, tail_ms, tuple(lines))


def _layer_chunks(layer: SpeechLayer, max_chars: int, say: Voicing) -> list[tuple[_Piece, bool]]:
    """Each chunk and whether it opens a written line: every written line is spoken on its
    own, a chunk per sentence, so a lyric line's time is its first chunk's start; a blank line
    is a paragraph pause; nothing after the last."""
    sentence = round(layer.pauses.sentence * 1000)
    paragraph = round(layer.pauses.paragraph * 1000)
    pieces: list[tuple[_Piece, bool]] = []
    for block in textlib.split_paragraphs(layer.text.replace("\r\n", "\n")):
        for line in block.split("\n"):
            chunks = _voiced_chunks(line, say, max_chars, by_sentence=True)
            pieces += [
                (_Piece(chunk.text, sentence if chunk.sentence_end else 0, words), k == 0)
                for k, (chunk, words) in enumerate(chunks)
            ]
        if pieces:
            pieces[-1] = (_paused(pieces[-1][0], paragraph), pieces[-1][1])
    if not pieces:  # manifest.py refuses such layers; never an IndexError here
        raise InputError(f"a spoken layer has nothing to speak: {layer.text[:40]!r}")
    pieces[-1] = (_paused(pieces[-1][0], 0), pieces[-1][1])  # the layer's tail follows
    return pieces


def _paused(piece: _Piece, pause_ms: int) -> _Piece:
    return dataclasses.replace(piece, pause_after_ms=pause_ms)


# ---------------------------------------------------------------------- shared


def _track_unit(index: int, track: Track) -> UnitSpec:
    """A track's unit, with its effective fades in ms (stored only where it fades)."""
    fade_in_ms, fade_out_ms = round(track.fade_in * 1000), round(track.fade_out * 1000)
    return UnitSpec(index, track.title, track.file, fade_in_ms, fade_out_ms)


def _comment(manifest: Audiobook | Album, profile: Profile) -> str:
    """Says what made the audio, so a placeholder is never mistaken for the real thing."""
    kind: Kind = "speech" if isinstance(manifest, Audiobook) else "music"
    spec = profile.engine_spec(kind)
    if spec.engine == "offline" and kind == "music":
        return "SKETCH: placeholder audio from songbatch's offline engine, not a real render"
    if spec.engine == "musicgen":
        return f"Made with {spec.model} (MusicGen weights: CC-BY-NC 4.0)"
    return f"Rendered by songbatch with {spec.engine} ({spec.model})"


def _assembly_spec(
    loaded: LoadedManifest,
    workspace: Workspace,
    units: list[UnitSpec],
    profile: Profile,
    cover: StoredFile | None,
) -> AssemblySpec:
    """Everything assembly needs, so that stage reads the ledger and never the manifest. What
    is stored only when set (assemblyspec.py) is what specs written before it lacked."""
    manifest = loaded.manifest
    book = isinstance(manifest, Audiobook)
    master, subtitles, lyrics_files = "none", [], []
    if isinstance(manifest, Audiobook):
        master = manifest.master or profile.master or "none"
        subtitles = list(manifest.subtitles)
    else:
        lyrics_files = list(manifest.lyrics_files)
    return AssemblySpec(
        kind=manifest.kind,
        output_dir=manifest.output or workspace.root / "outputs" / loaded.slug,
        formats=tuple(manifest.formats),
        cover=None if cover is None else cover.target,
        cover_sha256=None if cover is None else cover.sha256,
        tags=_spec_tags(manifest, profile),
        lead_in_ms=CHAPTER_LEAD_IN_MS if book else 0,
        book_file=safe_filename(manifest.title),
        units=tuple(units),
        encoding=dict(manifest.encoding),
        master=master,
        subtitles=tuple(subtitles),
        lyrics_files=tuple(lyrics_files),
    )


def _spec_tags(manifest: Audiobook | Album, profile: Profile) -> SpecTags:
    shared = SpecTags(
        album=manifest.title,
        year=manifest.year,
        description=manifest.description,
        comment=_comment(manifest, profile),
        artist=None,
        album_artist=None,
        genre=None,
    )
    if isinstance(manifest, Album):
        artist = manifest.artist
        return dataclasses.replace(shared, artist=artist, album_artist=artist, genre=manifest.genre)
    return dataclasses.replace(
        shared,
        artist=manifest.author,
        album_artist=manifest.author,
        genre="Audiobook",
        narrator=manifest.narrator,
        language=manifest.language,
        **dataclasses.asdict(manifest.publishing),
    )


def _row(row: PlanRow) -> tuple[int, int, str, int]:
    # Not the written words: the plan hash is the audio's plan; the ledger compares the
    # written words itself (`Ledger.diff_plan`), so changing them alone re-renders nothing.
    return (row.unit, row.seq, row.key, row.pause_after_ms)


def _unique(jobs: list[JobRow]) -> list[JobRow]:
    """A repeated sentence is one job that two places use."""
    seen: dict[str, JobRow] = {}
    for job in jobs:
        seen.setdefault(job.key, job)
    return list(seen.values())


def _store(item: StoredFile, owner: str) -> None:
    """Copy into the store once; the copy is hashed again, so a file edited while songbatch
    read it never lands under a name that is not its content's."""
    if item.target.exists():
        return
    item.target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(item.target, owner)
    try:
        shutil.copyfile(item.source, tmp)
        if file_sha256(tmp) != item.sha256:
            raise InputError(f"{item.source} changed while songbatch was reading it; run again")
        replace_durably(tmp, item.target)
    finally:
        remove_quietly(tmp)
