"""Chapter streams (streams.py): each chapter encoded once, the book joined from them by copy.

Everything here is real ffmpeg: the encoders' priming is measured by decoding what they wrote
and finding a known signal in it, so a change of encoder that moves audio by a sample fails.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import soundfile as sf
from mutagen.mp3 import MP3

from helpers.examples import example_book
from songbatch.events import RunEvent
from songbatch.ffmpeg import ffmpeg_exe
from songbatch.ledger import Ledger
from songbatch.manifest import load_manifest
from songbatch.outputs import BOOK_FORMATS
from songbatch.planner import plan_manifest
from songbatch.presets import BitrateMode, Encoding
from songbatch.profiles import resolve_profile
from songbatch.render import RenderOptions, render
from songbatch.streams import (
    STREAM_FORMATS,
    ChapterStream,
    book_marks,
    count_frames,
    encode_stream,
    heard_at,
    join_streams,
    load_stream,
)
from songbatch.tagging import Tags, read_chapters, read_tags
from songbatch.workspace import Workspace

OWNER = "00000000000be0c0"
FORMATS = BOOK_FORMATS  # every whole-book format is joined from chapter streams


def test_every_book_format_has_a_stream_format() -> None:
    assert set(STREAM_FORMATS) == set(BOOK_FORMATS)


def chirp(rate: int, seconds: float = 0.4) -> npt.NDArray[np.float64]:
    t = np.arange(round(rate * seconds)) / rate
    return 0.5 * np.sin(2 * np.pi * (200 + 2000 * t) * t)


def master(path: Path, rate: int, seconds: float, *, seed: int = 0) -> Path:
    """`seconds` of silence with a chirp at its very first sample (where a chapter's audio
    starts), and a quieter one of its own later so chapters differ."""
    audio = np.zeros(round(rate * seconds))
    signal = chirp(rate)
    audio[: signal.size] = signal
    later = chirp(rate, 0.2) * 0.3
    at = round(rate * (0.5 + 0.05 * seed))
    audio[at : at + later.size] = later
    sf.write(path, audio.astype(np.float32), rate, subtype="PCM_24", format="FLAC")
    return path


def decoded(path: Path, *demuxer: str) -> npt.NDArray[np.float64]:
    """Every sample a player gets from `path` (ffmpeg's decoder, edit lists applied), mono."""
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", *demuxer, "-i", str(path)]
    raw = subprocess.run(
        [*command, "-ac", "1", "-f", "s16le", "-"],
        capture_output=True,
        check=True,
    ).stdout
    return np.frombuffer(raw, dtype=np.int16).astype(np.float64) / 32768


def found_at(audio: npt.NDArray[np.float64], rate: int, near: int, span: int = 3000) -> int:
    """Where the chirp starts in `audio`, searched within `span` samples after `near`."""
    signal = chirp(rate)
    scores = [
        float(np.dot(audio[d : d + signal.size], signal))
        for d in range(near, min(near + span, audio.size - signal.size))
    ]
    return near + int(np.argmax(scores))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_each_encoder_primes_a_stream_by_its_known_delay(
    tmp_path: Path, fmt: str, rate: int
) -> None:
    stream = encode_stream(
        master(tmp_path / "m.flac", rate, 1.0), tmp_path / "s", fmt, Encoding(), owner=OWNER
    )
    audio = decoded(stream.path, "-f", STREAM_FORMATS[fmt].demuxer)
    assert found_at(audio, rate, 0) == STREAM_FORMATS[fmt].priming
    assert audio.size == stream.samples  # the headers' count is what a decoder gives
    assert stream.sample_rate == rate


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_stream_keeps_its_frame_count_beside_it(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "s"
    stream = encode_stream(
        master(tmp_path / "m.flac", 22050, 1.0), out, fmt, Encoding(), owner=OWNER
    )
    assert load_stream(out, fmt) == stream
    assert count_frames(out, fmt) == stream
    with out.open("ab") as grown:  # no longer what was counted: encoded again
        grown.write(b"\0")
    assert load_stream(out, fmt) is None
    assert load_stream(tmp_path / "absent", fmt) is None


def test_a_stream_takes_the_formats_encoding(tmp_path: Path) -> None:
    stream = encode_stream(
        master(tmp_path / "m.flac", 22050, 2.0),
        tmp_path / "s",
        "mp3-book",
        Encoding(sample_rate=44100, channels=2, bitrate_kbps=192, mode=BitrateMode.CBR),
        owner=OWNER,
    )
    assert (stream.sample_rate, stream.frame_samples) == (44100, 1152)
    size = stream.path.stat().st_size
    assert size == pytest.approx(192_000 / 8 * stream.samples / 44100, rel=0.01)


def chapters(folder: Path, fmt: str, rate: int, lengths: list[float]) -> list[ChapterStream]:
    return [
        encode_stream(
            master(folder / f"m{i}.flac", rate, seconds, seed=i),
            folder / f"s{i}",
            fmt,
            Encoding(),
            owner=OWNER,
        )
        for i, seconds in enumerate(lengths)
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_joined_book_marks_each_chapter_where_it_is_heard(tmp_path: Path, fmt: str) -> None:
    rate = 22050
    streams = chapters(tmp_path, fmt, rate, [1.3, 2.05, 1.77, 1.0])
    marks = book_marks(["One", "Two", "Three", "Four"], streams, fmt)
    book = tmp_path / "book"
    tags = Tags(title="Joined", album="Joined", narrator="A Voice")
    join_streams(streams, book, fmt, tags=tags, chapters=marks)

    audio = decoded(book)
    heard = heard_at(streams, fmt)
    for start in heard:
        assert found_at(audio, rate, max(0, start - 1500)) == start
    assert read_chapters(book) == [(m.title, m.start_ms) for m in marks]
    assert marks[0].start_ms == 0
    for mark, start in zip(marks[1:], heard[1:], strict=True):
        assert mark.start_ms == round(start * 1000 / rate)
    assert abs(marks[-1].end_ms - audio.size * 1000 / rate) <= 1
    assert read_tags(book).narrator == "A Voice"


def test_the_m4b_drops_the_first_priming_as_an_encode_would(tmp_path: Path) -> None:
    streams = chapters(tmp_path, "m4b", 44100, [1.0, 1.0])
    book = tmp_path / "book.m4b"
    join_streams(streams, book, "m4b", tags=Tags(title="T"), chapters=[])
    audio = decoded(book)
    assert found_at(audio, 44100, 0) == 0
    assert audio.size == sum(s.samples for s in streams) - STREAM_FORMATS["m4b"].priming
    assert STREAM_FORMATS["m4b"].dropped == STREAM_FORMATS["m4b"].priming


def test_the_book_mp3_has_one_info_frame_with_the_whole_length(tmp_path: Path) -> None:
    streams = chapters(tmp_path, "mp3-book", 44100, [1.5, 2.5, 1.0])
    book = tmp_path / "book.mp3"
    join_streams(streams, book, "mp3-book", tags=Tags(title="T"), chapters=[])
    seconds = sum(s.samples for s in streams) / 44100
    assert MP3(book).info.length == pytest.approx(seconds, abs=0.03)
    dropped = STREAM_FORMATS["mp3-book"].dropped  # the decoder's own delay, as the frame says
    assert decoded(book).size == sum(s.samples for s in streams) - dropped


# --------------------------------------------------------------------------- in a render


def stream_encodes(workspace: Path) -> dict[str, int]:
    with Ledger.for_reading(Workspace(workspace).ledger_path) as ledger:
        return {s.fmt: s.count for s in ledger.encode_samples()}


def at_the_last_job(jobs: int, then: Callable[[set[str]], None]) -> Callable[[RunEvent], None]:
    """An observer that calls `then` (with the jobs seen) at the last of `jobs` jobs' job-done
    event: in the coordinator's thread, which it holds there, before the tracker hears of the
    job; the assembly workers go on."""
    seen: set[str] = set()

    def observe(event: RunEvent) -> None:
        if event.kind == "job-done" and event.job is not None:
            seen.add(event.job)
            if len(seen) == jobs:
                then(seen)

    return observe


def test_chapters_are_streamed_while_later_ones_render(tmp_path: Path) -> None:
    """By the last job, every chapter finished before it has its .m4b and book .mp3 streams:
    the coordinator is held at that job's event (the assembly workers go on), and the streams
    must appear. After the run, each chapter was encoded once per format, the books joined."""
    book = example_book(tmp_path, formats="[m4b, mp3-book]")
    workspace = Workspace(tmp_path)
    loaded = load_manifest(book)
    plan = plan_manifest(loaded, resolve_profile("offline", None, workspace), workspace)
    last_unit = max(row.unit for row in plan.rows)
    earlier = {row.key for row in plan.rows if row.unit < last_unit}
    found: list[int] = []

    def wait_for_streams(seen: set[str]) -> None:
        assert earlier <= seen  # whole files first: the last job is the last chapter's
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            made = list(workspace.work_dir.glob("*.aac")) + list(workspace.work_dir.glob("*.mp3"))
            if len(made) >= 2 * last_unit:
                break
            time.sleep(0.05)
        found.append(len(made))

    options = RenderOptions(workspace, profile="offline")
    report = render([book], options, at_the_last_job(len(plan.jobs), wait_for_streams))
    assert report.exit_code == 0, report.assembly_errors
    assert found == [2 * last_unit]
    units = last_unit + 1
    encodes = stream_encodes(tmp_path)
    assert encodes == {"master": units, "m4b": units, "mp3-book": units} | {
        "m4b join": 1,
        "mp3-book join": 1,
    }


def paused_master(path: Path, rate: int, seconds: float) -> tuple[Path, list[int], list[int]]:
    """Chirps every second with 0.4 s of silence after each: the master, where each chirp
    starts, and where each silence starts (a pause a section may be cut in)."""
    audio = np.zeros(round(rate * seconds))
    signal = chirp(rate, 0.5)
    starts, quiet = [], []
    for at in range(round(0.1 * rate), audio.size - rate, rate):
        audio[at : at + signal.size] = signal
        starts.append(at)
        quiet.append(at + signal.size)
    sf.write(path, audio.astype(np.float32), rate, subtype="PCM_24", format="FLAC")
    return path, starts, quiet


@pytest.mark.parametrize("rate", [22050, 44100, 48000])
def test_a_chapter_in_sections_decodes_to_one_encodes_timeline(tmp_path: Path, rate: int) -> None:
    fmt = "m4b"
    made, starts, quiet = paused_master(tmp_path / "m.flac", rate, 12.0)
    whole = encode_stream(made, tmp_path / "whole", fmt, Encoding(), owner=OWNER)
    parts = encode_stream(
        made,
        tmp_path / "parts",
        fmt,
        Encoding(),
        owner=OWNER,
        quiet_at=quiet,
        sections=3,
        min_section_s=2.0,
    )
    assert parts.path.read_bytes() != whole.path.read_bytes()  # it was cut
    demuxer = ("-f", STREAM_FORMATS[fmt].demuxer)
    one, three = decoded(whole.path, *demuxer), decoded(parts.path, *demuxer)
    assert three.size == one.size == whole.samples == parts.samples
    priming = STREAM_FORMATS[fmt].priming
    for start in starts:
        assert found_at(three, rate, start + priming - 200, 400) == start + priming
    assert np.abs(three - one).max() < 0.05  # two encodes of one signal, not two signals


def test_the_book_mp3_is_never_cut_in_sections(tmp_path: Path) -> None:
    """LAME's padding does not follow the frames (one more when they come out whole)."""
    made, _starts, quiet = paused_master(tmp_path / "m.flac", 22050, 12.0)
    whole = encode_stream(made, tmp_path / "whole", "mp3-book", Encoding(), owner=OWNER)
    asked = encode_stream(
        made,
        tmp_path / "asked",
        "mp3-book",
        Encoding(),
        owner=OWNER,
        quiet_at=quiet,
        sections=3,
        min_section_s=2.0,
    )
    assert asked.path.read_bytes() == whole.path.read_bytes()


def test_a_rendered_chapter_cut_in_sections_keeps_the_books_timeline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example book's .m4b with its chapters' streams cut in sections at their pauses
    (sections of 5 s allowed, for chapters of 30) has the same marks and length as without."""
    books = {}
    for name, min_s in (("whole", 1e9), ("cut", 5.0)):
        monkeypatch.setattr("songbatch.streams.MIN_SECTION_S", min_s)
        folder = tmp_path / name
        book = example_book(folder, formats="[m4b]")
        report = render([book], RenderOptions(Workspace(folder), profile="offline"))
        assert report.exit_code == 0, report.assembly_errors
        [m4b] = (folder / "outputs").rglob("*.m4b")
        streams_made = sorted(p.read_bytes() for p in Workspace(folder).work_dir.glob("*.aac"))
        books[name] = (read_chapters(m4b), decoded(m4b).size, streams_made)
    assert books["cut"][:2] == books["whole"][:2]
    assert books["cut"][2] != books["whole"][2]  # the streams were cut
