"""Benchmark: streaming assembly and encoding of a long audiobook stays small in memory.

Builds HOURS of 10-second 22050 Hz mono FLAC chunks (a few distinct espeak renders, copied as
separate files), assembles one master per chapter with pauses, encodes one m4b with chapters,
and prints wall times and peak RSS (this process, and the largest ffmpeg child) against the
300 MB target. Memory must not grow with book length: compare --hours 0.5 with --hours 10.
With --master PRESET each chapter is also mastered (mastering.master_to: measure, gain,
limiter, resample, measure again) before the m4b is encoded from the mastered chapters, and
its time is printed against the rest of the assembly (issue 12's goal: at most 25 % more).

With --pipelined the book is built as a render builds it now: each chapter's master and then
its AAC stream (streams.py) as the chapter "finishes", one after another, then the .m4b joined
from the streams (mp4.py); printed beside ffmpeg's join of the same streams (the join before
mp4.py) and the encode from the masters, with the tail a render has after its last job: the
last chapter's master and stream, then the join (issue 12's goal: <= 5 s for a 10-hour book).

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
from pathlib import Path

import numpy as np

from songbatch.audio import (
    Segment,
    assemble_master,
    chapter_marks,
    encode,
    segment_frames,
    write_chunk,
)
from songbatch.engines import EngineSpec, RenderRequest, load_engine
from songbatch.engines.base import RenderResult
from songbatch.ffmpeg import ffmpeg_exe
from songbatch.mastering import master_to
from songbatch.presets import Encoding, preset
from songbatch.streams import ChapterStream, book_marks, encode_stream, join_streams
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
    segments = [Segment(path, silence_s=PAUSE_S) for path in chunks]
    return [*segments, Segment(silence_s=CHAPTER_END_S)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=10.0, help="book length (default 10)")
    parser.add_argument("--chunk-seconds", type=float, default=10.0)
    parser.add_argument("--chapter-minutes", type=float, default=30.0)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temp folder")
    parser.add_argument("--master", default=None, help="a mastering preset: acx, podcast...")
    parser.add_argument("--pipelined", action="store_true", help="streams, then the join")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="songbatch-bench-", dir=args.workdir))
    try:
        if args.pipelined:
            return pipelined(args.hours, args.chunk_seconds, args.chapter_minutes, work)
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

    masters, durations = [], []
    for number, first in enumerate(range(0, count, per_chapter), start=1):
        master = work / "masters" / f"chapter-{number:03d}.flac"
        segments = chapter_segments(chunks[first : first + per_chapter])
        durations.append(
            assemble_master(
                segments, master, sample_rate=SAMPLE_RATE, channels=1, owner="00000000000be0c0"
            )
        )
        masters.append(master)
    assembled = time.perf_counter()
    if preset_name is not None:
        chosen = preset(preset_name)
        mastered = [path.with_name(f"{path.stem}-{preset_name}.flac") for path in masters]
        for source, target in zip(masters, mastered, strict=True):
            master_to(source, target, chosen)
        masters = mastered
    mastering_s = time.perf_counter() - assembled
    assembled = time.perf_counter()

    titles = [f"Chapter {n}" for n in range(1, len(masters) + 1)]
    book = work / "book.m4b"
    tags = Tags(title="Benchmark Book", album="Benchmark Book", narrator="espeak-ng")
    encode(masters, book, "m4b", tags=tags, chapters=chapter_marks(titles, durations))
    encoded = time.perf_counter()

    audio_s = sum(durations) / 1000
    assert len(read_chapters(book)) == len(masters)
    self_mb = peak_rss_mb(resource.RUSAGE_SELF)
    child_mb = peak_rss_mb(resource.RUSAGE_CHILDREN)
    assemble_s, encode_s = assembled - built, encoded - assembled
    report(
        {
            "chunks": f"{count} x {chunk_s:g} s -> {len(masters)} chapters, {audio_s / 3600:.2f} h",
            "build chunks": f"{built - started:.1f} s (peak RSS so far {rss_after_build:.0f} MB)",
            "assemble masters": f"{assemble_s:.1f} s ({audio_s / assemble_s:.0f}x realtime)",
            "encode m4b": f"{encode_s:.1f} s ({audio_s / encode_s:.0f}x realtime)",
            **(
                {f"master ({preset_name})": mastering_note(mastering_s, assemble_s + encode_s)}
                if master
                else {}
            ),
            "m4b size": f"{book.stat().st_size / 1e6:.0f} MB",
            "peak RSS python": f"{self_mb:.0f} MB ({self_mb / TARGET_MB:.2f} of target)",
            "peak RSS ffmpeg": f"{child_mb:.0f} MB ({child_mb / TARGET_MB:.2f} of target)",
            "target": f"{TARGET_MB} MB each",
            "wall time": f"{encoded - started:.1f} s",
        }
    )
    return 0 if max(self_mb, child_mb) <= TARGET_MB else 1


def pauses_in(segments: list[Segment]) -> list[int]:
    """Where each pause after a chunk begins, 60 ms in (the render's section cuts)."""
    quiet, at = [], 0
    for segment in segments:
        at += segment_frames(Segment(segment.path), SAMPLE_RATE) if segment.path else 0
        if segment.silence_s >= 0.3:
            quiet.append(at + round(0.06 * SAMPLE_RATE))
        at += round(segment.silence_s * SAMPLE_RATE)
    return quiet


def pipelined(hours: float, chunk_s: float, chapter_min: float, work: Path) -> int:
    """The book built chapter by chapter as a render does (master, then its stream), the
    .m4b joined from the streams; against one encode from the masters, in the same run."""
    count = max(1, round(hours * 3600 / chunk_s))
    per_chapter = max(1, round(chapter_min * 60 / chunk_s))
    (work / "chunks").mkdir()
    (work / "masters").mkdir()
    chunks = build_chunks(work / "chunks", count, chunk_s)
    masters, streams, master_s, stream_s = [], [], [], []
    for number, first in enumerate(range(0, count, per_chapter), start=1):
        master = work / "masters" / f"chapter-{number:03d}.flac"
        started = time.perf_counter()
        segments = chapter_segments(chunks[first : first + per_chapter])
        assemble_master(
            segments, master, sample_rate=SAMPLE_RATE, channels=1, owner="00000000000be0c0"
        )
        mastered = time.perf_counter()
        stream = encode_stream(
            master,
            master.with_suffix(".aac"),
            "m4b",
            Encoding(),
            owner="00000000000be0c0",
            quiet_at=pauses_in(segments),
            sections=os.cpu_count() or 1,
        )
        streamed = time.perf_counter()
        masters.append(master)
        streams.append(stream)
        master_s.append(mastered - started)
        stream_s.append(streamed - mastered)
    titles = [f"Chapter {n}" for n in range(1, len(masters) + 1)]
    tags = Tags(title="Benchmark Book", album="Benchmark Book", narrator="espeak-ng")
    started = time.perf_counter()
    join_streams(
        streams, work / "joined.m4b", "m4b", tags=tags, chapters=book_marks(titles, streams, "m4b")
    )
    join_s = time.perf_counter() - started
    started = time.perf_counter()
    ffmpeg_join(streams, work / "ffmpeg-joined.m4b")
    ffmpeg_join_s = time.perf_counter() - started
    started = time.perf_counter()
    durations = [round(s.samples * 1000 / s.sample_rate) for s in streams]
    encode(
        masters, work / "encoded.m4b", "m4b", tags=tags, chapters=chapter_marks(titles, durations)
    )
    encode_s = time.perf_counter() - started
    audio_s = sum(s.samples for s in streams) / SAMPLE_RATE
    assert len(read_chapters(work / "joined.m4b")) == len(masters)
    tail_s = master_s[-1] + stream_s[-1] + join_s
    report(
        {
            "book": f"{len(masters)} chapters, {audio_s / 3600:.2f} h",
            "per chapter": f"master {sum(master_s) / len(masters):.1f} s,"
            f" AAC stream {sum(stream_s) / len(masters):.1f} s (mean)",
            "join the m4b": f"{join_s:.1f} s ({audio_s / join_s:.0f}x realtime; songbatch's"
            f" own writer, mp4.py)",
            "before: ffmpeg's join": f"{ffmpeg_join_s:.1f} s (the same streams copied by ffmpeg,"
            f" no tags; {ffmpeg_join_s / join_s:.1f}x the writer's)",
            "tail after the last job": f"{tail_s:.1f} s (last master {master_s[-1]:.1f} s"
            f" + its stream {stream_s[-1]:.1f} s + join {join_s:.1f} s; goal <= 5 s)",
            "before: m4b from the masters": f"{encode_s:.1f} s, all of it after the last job",
            "m4b sizes": f"joined {(work / 'joined.m4b').stat().st_size / 1e6:.0f} MB,"
            f" encoded {(work / 'encoded.m4b').stat().st_size / 1e6:.0f} MB",
        }
    )
    return 0


def ffmpeg_join(streams: list[ChapterStream], out: Path) -> None:
    """The join as it was before mp4.py: ffmpeg's copy of the ADTS streams into an .m4b."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{s.path}\n" for s in streams), encoding="utf-8")
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-itsoffset", "-0.046440"]
    command += ["-f", "aac", "-i", f"concatf:{listing}", "-c:a", "copy"]
    command += ["-movflags", "+faststart", "-f", "mp4", str(out)]
    subprocess.run(command, check=True)


def mastering_note(mastering_s: float, rest_s: float) -> str:
    return (
        f"{mastering_s:.1f} s: {mastering_s / rest_s:.2f} of assembling and encoding (goal <= 0.25)"
    )


def report(rows: dict[str, str]) -> None:
    width = max(map(len, rows))
    for name, value in rows.items():
        print(f"{name:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
