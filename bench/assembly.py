"""Benchmark: streaming assembly and encoding of a long audiobook stays small in memory.

Builds HOURS of 10-second 22050 Hz mono FLAC chunks (a few distinct espeak renders, copied as
separate files), assembles one master per chapter with pauses, encodes one m4b with chapters,
and prints wall times and peak RSS (this process, and the largest ffmpeg child) against the
300 MB target. Memory must not grow with book length: compare --hours 0.5 with --hours 10.
With --master PRESET each chapter is then also mastered as a render masters it (from its
chunks, in place of its raw master: mastering.master_to measures, then one pass applies gain,
limiter and resample and measures what it wrote), and the m4b encoded from the mastered
chapters; what mastering adds is printed against assembling and encoding the same book
without it, in the same run, at the preset's encoding both ways (issue 12's goal: at most 25 %
more).

With --pipelined the book is built as a render builds it: each chapter's master and then its
AAC stream (streams.py) as the chapter "finishes", one after another, then the .m4b joined
from the streams (mp4.py); printed beside ffmpeg's join of the same streams (the join before
mp4.py) and the encode from the masters (--skip-full-encode leaves that out), with the tail a
render has after its last job: the last chapter's master and stream, then the join (issue 12's
goal: <= 5 s for a 10-hour book). In the same run, each chapter's stream is also made as a
render without a mastering preset makes it now (sections.py): its chunks arrive one by one in
text order (as a small claim frontier delivers them; arrival is instant, as on a GPU box where
rendering a chunk takes longer than encoding it), the sections they decide are encoded as they
arrive, and at the chapter's last job the rest is encoded and joined while its master is built
beside it. A third tail is printed for the last chapter arriving all at once, as a wide
frontier (every chunk of it claimed together, longest first) may deliver it.

    .venv/bin/python bench/assembly.py --hours 10
    .venv/bin/python bench/assembly.py --hours 0.5 --master acx
    .venv/bin/python bench/assembly.py --hours 10 --pipelined
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from songbatch import sections
from songbatch.audio import (
    Segment,
    assemble_master,
    audio_duration_ms,
    chapter_marks,
    encode,
    segment_frames,
    segments_audio,
    write_chunk,
)
from songbatch.engines import EngineSpec, RenderRequest, load_engine
from songbatch.engines.base import RenderResult
from songbatch.ffmpeg import ffmpeg_exe
from songbatch.mastering import master_to
from songbatch.presets import Encoding, preset
from songbatch.streams import (
    MIN_SECTION_S,
    ChapterStream,
    book_marks,
    encode_stream,
    join_streams,
    stream_path,
)
from songbatch.tagging import Tags, read_chapters

TARGET_MB = 300
SAMPLE_RATE = 22050
PAUSE_S = 0.4
CHAPTER_END_S = 1.5
SENTENCES = (
    "It was a bright cold day in April, and the clocks were striking thirteen.",
    "The sky above the port was the colour of television, tuned to a dead channel.",
    "All happy families are alike; each unhappy family is unhappy in its own way.",
    "Call me Ishmael. Some years ago, never mind how long precisely, I went to sea.",
)


def peak_rss_mb(who: int) -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(who).ru_maxrss * scale / 1e6


def distinct_chunks(folder: Path, seconds: float) -> list[Path]:
    """A few chunk files of exactly `seconds` each, rendered by the offline speech engine."""
    engine = load_engine(EngineSpec(kind="speech", engine="offline", model="espeak"), "cpu")
    frames = round(seconds * SAMPLE_RATE)
    paths = []
    for i, sentence in enumerate(SENTENCES):
        request = RenderRequest(key=f"d{i}", kind="speech", text=sentence, seed=0)
        speech = engine.render([request], lambda: None)[0].audio
        gap = np.zeros(round(PAUSE_S * SAMPLE_RATE), dtype=np.float32)
        audio = np.tile(np.concatenate([speech, gap]), frames // (speech.size + gap.size) + 1)
        path = folder / f"distinct-{i}.flac"
        write_chunk(path, RenderResult(audio[:frames], SAMPLE_RATE), key=f"d{i}")
        paths.append(path)
    return paths


def build_chunks(folder: Path, count: int, seconds: float) -> list[Path]:
    sources = distinct_chunks(folder, seconds)
    chunks = []
    for i in range(count):
        path = folder / f"{i:06d}.flac"
        shutil.copyfile(sources[i % len(sources)], path)
        chunks.append(path)
    return chunks


def chapter_segments(chunks: list[Path]) -> list[Segment]:
    return [segment for segment, _ident in named_segments(chunks)]


def named_segments(chunks: list[Path]) -> list[tuple[Segment, str]]:
    """A chapter's segments as the Assembler lays them out (each chunk, then its pause as a
    segment of its own: where sections are cut), each with what decides its samples."""
    named: list[tuple[Segment, str]] = []
    for path in chunks:
        named += [(Segment(path), path.name), (Segment(silence_s=PAUSE_S), "")]
    return [*named[:-1], (Segment(silence_s=PAUSE_S + CHAPTER_END_S), "")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=10.0, help="book length (default 10)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--chapter-minutes", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--master", default=None, help="a mastering preset: acx, podcast...")
    parser.add_argument("--pipelined", action="store_true", help="streams, then the join")
    parser.add_argument(
        "--skip-full-encode", action="store_true", help="--pipelined: no encode from masters"
    )
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="songbatch-bench-", dir=args.workdir))
    try:
        if args.pipelined:
            minutes = args.chapter_minutes
            full = not args.skip_full_encode
            return pipelined(args.hours, args.chunk_seconds, minutes, work, full_encode=full)
        return run(args.hours, args.chunk_seconds, args.chapter_minutes, work, args.master)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(
    hours: float, chunk_s: float, chapter_min: float, work: Path, preset_name: str | None = None
) -> int:
    count = max(1, round(hours * 3600 / chunk_s))
    per_chapter = max(1, round(chapter_min * 60 / chunk_s))
    (work / "chunks").mkdir()
    (work / "masters").mkdir()

    started = time.perf_counter()
    chunks = build_chunks(work / "chunks", count, chunk_s)
    built = time.perf_counter()
    rss_after_build = peak_rss_mb(resource.RUSAGE_SELF)

    chapters = [
        chapter_segments(chunks[first : first + per_chapter])
        for first in range(0, count, per_chapter)
    ]
    masters, durations = [], []
    for number, segments in enumerate(chapters, start=1):
        master = work / "masters" / f"chapter-{number:03d}.flac"
        durations.append(
            assemble_master(segments, master, sample_rate=SAMPLE_RATE, channels=1, owner=OWNER)
        )
        masters.append(master)
    assembled = time.perf_counter()
    # The preset's encoding both ways, so the two encodes differ only in their masters.
    encoding = preset(preset_name or "none").encoding("m4b")
    book = work / "book.m4b"
    encode_book(masters, durations, book, encoding)
    encoded = time.perf_counter()
    assemble_s, encode_s = assembled - built, encoded - assembled
    rows = {
        "chunks": f"{count} x {chunk_s:g} s -> {len(masters)} chapters, "
        f"{sum(durations) / 3_600_000:.2f} h",
        "build chunks": f"{built - started:.1f} s (peak RSS so far {rss_after_build:.0f} MB)",
        "assemble masters": f"{assemble_s:.1f} s ({sum(durations) / 1000 / assemble_s:.0f}x"
        " realtime)",
        "encode m4b": f"{encode_s:.1f} s ({sum(durations) / 1000 / encode_s:.0f}x realtime)",
    }
    if preset_name is not None:
        rows.update(master_book(chapters, work, preset_name, encoding, assemble_s, encode_s))
    self_mb = peak_rss_mb(resource.RUSAGE_SELF)
    child_mb = peak_rss_mb(resource.RUSAGE_CHILDREN)
    rows |= {
        "m4b size": f"{book.stat().st_size / 1e6:.0f} MB",
        "peak RSS python": f"{self_mb:.0f} MB ({self_mb / TARGET_MB:.2f} of target)",
        "peak RSS ffmpeg": f"{child_mb:.0f} MB ({child_mb / TARGET_MB:.2f} of target)",
        "target": f"{TARGET_MB} MB each",
        "wall time": f"{time.perf_counter() - started:.1f} s",
    }
    report(rows)
    return 0 if max(self_mb, child_mb) <= TARGET_MB else 1


def encode_book(masters: list[Path], durations: list[int], book: Path, encoding: Encoding) -> None:
    titles = [f"Chapter {n}" for n in range(1, len(masters) + 1)]
    tags = Tags(title="Benchmark Book", album="Benchmark Book", narrator="espeak-ng")
    encode(
        masters,
        book,
        "m4b",
        tags=tags,
        chapters=chapter_marks(titles, durations),
        bitrate=f"{encoding.bitrate_kbps}k" if encoding.bitrate_kbps else None,
        sample_rate=encoding.sample_rate,
        channels=encoding.channels,
    )
    assert len(read_chapters(book)) == len(masters)


def master_book(
    chapters: list[list[Segment]],
    work: Path,
    preset_name: str,
    encoding: Encoding,
    assemble_s: float,
    encode_s: float,
) -> dict[str, str]:
    """Each chapter mastered as the Assembler masters it (from its chunks, in place of its
    raw master), then the book encoded from the mastered chapters; what mastering adds to
    assembling and encoding the book without it, measured above in the same run."""
    chosen = preset(preset_name)
    started = time.perf_counter()
    mastered, durations = [], []
    for number, segments in enumerate(chapters, start=1):
        target = work / "masters" / f"chapter-{number:03d}-{preset_name}.flac"
        laid = segments_audio(segments, sample_rate=SAMPLE_RATE, channels=1)
        master_to(laid, target, chosen, name=target.name)
        mastered.append(target)
        durations.append(audio_duration_ms(target))
    mastering_s = time.perf_counter() - started
    encode_book(mastered, durations, work / "mastered.m4b", encoding)
    mastered_encode_s = time.perf_counter() - started - mastering_s
    # Against the encode the mastered book gets: the one from the unmastered masters is no
    # fair base (AAC at 44.1 kHz runs about 2x slower from 22.05 kHz masters than from 44.1).
    without = assemble_s + mastered_encode_s
    added = mastering_s - assemble_s
    return {
        "encode m4b, mastered": f"{mastered_encode_s:.1f} s",
        f"master ({preset_name})": f"{mastering_s:.1f} s, in place of the masters' "
        f"{assemble_s:.1f} s: adds {added / without:.2f} of assembling and encoding "
        "(goal <= 0.25)",
    }


def pauses_in(segments: list[Segment]) -> list[int]:
    """Where each pause after a chunk begins, 60 ms in (the render's section cuts)."""
    quiet, at = [], 0
    for segment in segments:
        at += segment_frames(Segment(segment.path), SAMPLE_RATE) if segment.path else 0
        if segment.silence_s >= 0.3:
            quiet.append(at + round(0.06 * SAMPLE_RATE))
        at += round(segment.silence_s * SAMPLE_RATE)
    return quiet


OWNER = "00000000000be0c0"


def pipelined(
    hours: float, chunk_s: float, chapter_min: float, work: Path, *, full_encode: bool = True
) -> int:
    """The book built chapter by chapter as a render does, the .m4b joined from the streams;
    each chapter's stream made both ways (from its master; in sections as its chunks arrive),
    against one encode from the masters, in the same run."""
    count = max(1, round(hours * 3600 / chunk_s))
    per_chapter = max(1, round(chapter_min * 60 / chunk_s))
    (work / "chunks").mkdir()
    (work / "masters").mkdir()
    chunks = build_chunks(work / "chunks", count, chunk_s)
    chapters = [chunks[first : first + per_chapter] for first in range(0, count, per_chapter)]
    masters, streams, master_s, stream_s = [], [], [], []
    arrived, during_s, arriving_tail_s = [], [], []
    for number, chapter in enumerate(chapters, start=1):
        master = work / "masters" / f"chapter-{number:03d}.flac"
        made, timings = stream_from_master(chapter, master)
        masters.append(master)
        streams.append(made)
        master_s.append(timings[0])
        stream_s.append(timings[1])
        folder = work / f"arriving-{number:03d}"
        during, tail, stream = arriving_stream(named_segments(chapter), folder, in_order=True)
        arrived.append(stream)
        during_s.append(during)
        arriving_tail_s.append(tail)
    _d, at_once_s, _s = arriving_stream(
        named_segments(chapters[-1]), work / "at-once", in_order=False
    )
    assert [s.samples for s in arrived] == [s.samples for s in streams]  # one timeline
    titles = [f"Chapter {n}" for n in range(1, len(masters) + 1)]
    tags = Tags(title="Benchmark Book", album="Benchmark Book", narrator="espeak-ng")
    join_s = timed_join(streams, work / "joined.m4b", titles, tags)
    arrived_join_s = timed_join(arrived, work / "arrived.m4b", titles, tags)
    started = time.perf_counter()
    ffmpeg_join(streams, work / "ffmpeg-joined.m4b")
    ffmpeg_join_s = time.perf_counter() - started
    encode_s = encode_from_masters(masters, streams, work, titles, tags) if full_encode else None
    audio_s = sum(s.samples for s in streams) / SAMPLE_RATE
    assert len(read_chapters(work / "joined.m4b")) == len(masters)
    tail_s = master_s[-1] + stream_s[-1] + join_s
    rows = {
        "book": f"{len(masters)} chapters, {audio_s / 3600:.2f} h",
        "per chapter, from its master": f"master {mean(master_s):.1f} s,"
        f" AAC stream {mean(stream_s):.1f} s in {os.cpu_count()} sections (mean)",
        "per chapter, as chunks arrive": f"sections {mean(during_s):.1f} s while it renders,"
        f" then {mean(arriving_tail_s):.1f} s: the rest and the join, its master beside (mean)",
        "join the m4b": f"{join_s:.1f} s ({audio_s / join_s:.0f}x realtime; songbatch's"
        f" own writer, mp4.py); from the arrived streams {arrived_join_s:.1f} s",
        "before: ffmpeg's join": f"{ffmpeg_join_s:.1f} s (the same streams copied by ffmpeg,"
        f" no tags; {ffmpeg_join_s / join_s:.1f}x the writer's)",
        "tail, stream from the master": f"{tail_s:.1f} s (last master {master_s[-1]:.1f} s"
        f" + its stream {stream_s[-1]:.1f} s + join {join_s:.1f} s; goal <= 5 s)",
        "tail, sections as chunks arrive": f"{arriving_tail_s[-1] + arrived_join_s:.1f} s"
        f" (the rest of the last chapter, its master beside, {arriving_tail_s[-1]:.1f} s"
        f" + join {arrived_join_s:.1f} s; goal <= 5 s)",
        "tail, last chapter all at once": f"{at_once_s + arrived_join_s:.1f} s (every section"
        f" after the last job, one per core, its master beside, {at_once_s:.1f} s + join)",
    }
    if encode_s is not None:
        rows["before: m4b from the masters"] = f"{encode_s:.1f} s, all of it after the last job"
    report(rows)
    return 0


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def stream_from_master(chapter: list[Path], master: Path) -> tuple[ChapterStream, list[float]]:
    """The chapter's master, then its stream from it in a section per core, as a render with a
    mastering preset still makes it; (stream, [master s, stream s])."""
    started = time.perf_counter()
    segments = chapter_segments(chapter)
    assemble_master(segments, master, sample_rate=SAMPLE_RATE, channels=1, owner=OWNER)
    mastered = time.perf_counter()
    stream = encode_stream(
        master,
        master.with_suffix(".aac"),
        "m4b",
        Encoding(),
        owner=OWNER,
        quiet_at=pauses_in(segments),
        sections=os.cpu_count() or 1,
    )
    return stream, [mastered - started, time.perf_counter() - mastered]


def arriving_stream(
    named: list[tuple[Segment, str]], folder: Path, *, in_order: bool
) -> tuple[float, float, ChapterStream]:
    """The chapter's stream as `Assembler` makes it without a mastering preset: with
    `in_order`, its chunks arrive one by one and the sections they decide are encoded at once;
    at its last job the rest are encoded, one per core, and joined while its master is built
    beside them. (seconds while it renders, seconds after its last job, the stream)."""
    folder.mkdir()
    pieces = sections.place(named, lambda segment, _ident: segment_frames(segment, SAMPLE_RATE))
    done: dict[sections.Section, ChapterStream] = {}
    started = time.perf_counter()
    for arrived in range(2, len(pieces) + 1, 2) if in_order else ():  # a chunk and its pause
        for section in cut(pieces[:arrived], whole=False):
            if section not in done:
                done[section] = encode_one(pieces, section, folder)
    during = time.perf_counter() - started
    started = time.perf_counter()
    segments = [segment for segment, _ident in named]
    with ThreadPoolExecutor(1) as beside:
        master = beside.submit(
            assemble_master,
            segments,
            folder / "master.flac",
            sample_rate=SAMPLE_RATE,
            channels=1,
            owner=OWNER,
        )
        cuts = cut(pieces, whole=True)
        rest = [s for s in cuts if s not in done]
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            made = pool.map(lambda s: encode_one(pieces, s, folder), rest)
            done |= dict(zip(rest, made, strict=True))
        stream = sections.join_sections(
            [done[s] for s in cuts], stream_path(folder, "chapter", "m4b"), "m4b", OWNER
        )
        master.result()
    return during, time.perf_counter() - started, stream


def cut(pieces: list[sections.Piece], *, whole: bool) -> list[sections.Section]:
    return sections.cut(pieces, "m4b", SAMPLE_RATE, MIN_SECTION_S, whole=whole)


def encode_one(
    pieces: list[sections.Piece], section: sections.Section, folder: Path
) -> ChapterStream:
    out = folder / f"section-{section.start}.aac"
    return sections.encode_section(
        pieces, section, out, "m4b", Encoding(), rate=SAMPLE_RATE, channels=1, owner=OWNER
    )


def timed_join(streams: list[ChapterStream], out: Path, titles: list[str], tags: Tags) -> float:
    started = time.perf_counter()
    join_streams(streams, out, "m4b", tags=tags, chapters=book_marks(titles, streams, "m4b"))
    return time.perf_counter() - started


def encode_from_masters(
    masters: list[Path], streams: list[ChapterStream], work: Path, titles: list[str], tags: Tags
) -> float:
    started = time.perf_counter()
    durations = [round(s.samples * 1000 / s.sample_rate) for s in streams]
    encode(
        masters, work / "encoded.m4b", "m4b", tags=tags, chapters=chapter_marks(titles, durations)
    )
    return time.perf_counter() - started


def ffmpeg_join(streams: list[ChapterStream], out: Path) -> None:
    """The join as it was before mp4.py: ffmpeg's copy of the ADTS streams into an .m4b."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{s.path}\n" for s in streams), encoding="utf-8")
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-itsoffset", "-0.046440"]
    command += ["-f", "aac", "-i", f"concatf:{listing}", "-c:a", "copy"]
    command += ["-movflags", "+faststart", "-f", "mp4", str(out)]
    subprocess.run(command, check=True)


def report(rows: dict[str, str]) -> None:
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
