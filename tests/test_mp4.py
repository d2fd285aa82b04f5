"""The .m4b songbatch writes itself (mp4.py) from chapter streams, read back by ffmpeg and mutagen.

The reference is ffmpeg's own mux of the same ADTS streams (what the join was before): a player
must get the same samples from both, to the sample, and the same chapters. Nothing here reads
the file with songbatch's own code, except where a test says which box it changes.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pytest
from mutagen.mp4 import MP4

from songbatch import mp4
from songbatch.errors import EngineError
from songbatch.ffmpeg import ffmpeg_exe
from songbatch.presets import Encoding
from songbatch.streams import (
    STREAM_FORMATS,
    ChapterStream,
    book_marks,
    count_path,
    encode_stream,
    frame_lengths,
    join_streams,
)
from songbatch.tagging import Tags, read_chapters, read_tags
from test_streams import OWNER, chapters, decoded, master


def ffmpeg_mux(streams: list[ChapterStream], out: Path) -> Path:
    """The same streams muxed by ffmpeg, the edit list hiding the first priming."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"{s.path}\n" for s in streams), encoding="utf-8")
    priming = STREAM_FORMATS["m4b"].dropped / streams[0].sample_rate
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-itsoffset", f"{-priming:.9f}"]
    command += ["-f", "aac", "-i", f"concatf:{listing}", "-c:a", "copy", "-f", "mp4", str(out)]
    subprocess.run(command, check=True)
    return out


def ffmpeg_chapters(path: Path) -> list[tuple[str, int]]:
    """(title, start ms) of each chapter as ffmpeg's demuxer reads them."""
    command = [ffmpeg_exe(), "-nostdin", "-loglevel", "error", "-i", str(path)]
    text = subprocess.run(
        [*command, "-f", "ffmetadata", "-"], capture_output=True, check=True, text=True
    ).stdout
    found, title, start, base = [], None, 0, 1.0
    for line in [*text.splitlines(), "[CHAPTER]"]:
        if line == "[CHAPTER]":
            if title is not None:
                found.append((title, round(start * base * 1000)))
            title, start = "", 0
        elif line.startswith("TIMEBASE="):
            num, den = line.split("=", 1)[1].split("/")
            base = int(num) / int(den)
        elif line.startswith("START="):
            start = int(line.split("=", 1)[1])
        elif line.startswith("title=") and title is not None:
            title = line.split("=", 1)[1]
    return found


def joined(folder: Path, streams: list[ChapterStream], titles: list[str], **tags: object) -> Path:
    book = folder / "book.m4b"
    marks = book_marks(titles, streams, "m4b") if titles else []
    join_streams(streams, book, "m4b", tags=Tags(title="Book", **tags), chapters=marks)  # type: ignore[arg-type]
    return book


@pytest.mark.parametrize(("rate", "channels"), [(22050, 1), (44100, 2), (48000, 1)])
def test_players_get_the_samples_ffmpegs_own_mux_gives(
    tmp_path: Path, rate: int, channels: int
) -> None:
    streams = [
        encode_stream(
            master(tmp_path / f"m{n}.flac", rate, seconds, seed=n),
            tmp_path / f"s{n}",
            "m4b",
            Encoding(channels=channels),
            owner=OWNER,
        )
        for n, seconds in enumerate([1.3, 2.05, 0.9])
    ]
    ours = joined(tmp_path, streams, ["One", "Two", "Three"])
    theirs = ffmpeg_mux(streams, tmp_path / "ffmpeg.m4b")
    assert np.array_equal(decoded(ours), decoded(theirs))
    info = MP4(ours).info
    assert (info.sample_rate, info.channels, info.codec) == (rate, channels, "mp4a.40.2")
    # mutagen's length is the media's, priming included, as in ffmpeg's file
    assert info.length == pytest.approx(MP4(theirs).info.length, abs=1e-6)
    assert info.length == sum(s.samples for s in streams) / rate


def test_chapters_read_the_same_from_either_list(tmp_path: Path) -> None:
    """ffmpeg (and so Audiobookshelf and Plex) and mutagen read the Nero list; Apple's players
    read only the chapter track. With the Nero list renamed away, the track alone must give the
    same chapters."""
    streams = chapters(tmp_path, "m4b", 22050, [1.2, 1.5, 0.9, 1.1])
    titles = ["Opening", "Kapitel Zwei: Über Nacht", "三", "The End"]
    book = joined(tmp_path, streams, titles)
    marks = book_marks(titles, streams, "m4b")
    expected = [(m.title, m.start_ms) for m in marks]
    assert read_chapters(book) == expected
    assert ffmpeg_chapters(book) == expected

    data = bytearray(book.read_bytes())
    at = data.index(b"chpl")
    data[at : at + 4] = b"free"
    track_only = tmp_path / "track-only.m4b"
    track_only.write_bytes(bytes(data))
    assert ffmpeg_chapters(track_only) == expected


def test_a_long_title_is_cut_in_the_nero_list_only(tmp_path: Path) -> None:
    streams = chapters(tmp_path, "m4b", 22050, [1.0, 1.0])
    long = "ü" * 200  # 400 bytes: past the Nero list's 255
    book = joined(tmp_path, streams, ["Short", long])
    nero = read_chapters(book)
    assert nero[1][0] == "ü" * 127  # whole characters, at most 255 bytes
    data = bytearray(book.read_bytes())
    at = data.index(b"chpl")
    data[at : at + 4] = b"free"
    (tmp_path / "track.m4b").write_bytes(bytes(data))
    assert ffmpeg_chapters(tmp_path / "track.m4b")[1][0] == long


def test_the_tags_go_in_place_and_the_audio_stays_where_the_tables_say(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mutagen fills the room the writer left: the file does not grow, so the audio was not
    moved (had it moved with stale offsets, the decode would differ)."""
    cover = tmp_path / "cover.png"
    cover.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20_000))
    streams = chapters(tmp_path, "m4b", 22050, [1.0, 1.4])
    untagged: list[int] = []
    write = mp4.write_m4b

    def measured(sources: list[mp4.AdtsSource], out: BinaryIO, **kwargs: Any) -> None:
        write(sources, out, **kwargs)
        untagged.append(out.tell())

    monkeypatch.setattr(mp4, "write_m4b", measured)
    book = tmp_path / "book.m4b"
    tags = Tags(title="Book", album="Book", narrator="A Voice", cover=cover, series="S")
    join_streams(streams, book, "m4b", tags=tags, chapters=[])
    assert untagged == [book.stat().st_size]
    read = read_tags(book)
    assert (read.narrator, read.series, read.cover_bytes) == ("A Voice", "S", cover.read_bytes())
    assert np.array_equal(decoded(book), decoded(ffmpeg_mux(streams, tmp_path / "ff.m4b")))


def test_offsets_and_durations_past_32_bits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A book past 4 GiB takes 64-bit chunk offsets and a large mdat; one past 2^32 samples
    (27 hours at 44.1 kHz) version 1 headers. With the limit lowered, ffmpeg must read the
    64-bit forms of a small book as it reads the 32-bit ones."""
    streams = chapters(tmp_path, "m4b", 22050, [1.0, 1.5])
    small = joined(tmp_path, streams, ["One", "Two"])
    reference = decoded(small)
    small.rename(tmp_path / "small.m4b")
    monkeypatch.setattr(mp4, "FITS_32", 1000)
    large = joined(tmp_path, streams, ["One", "Two"])
    data = large.read_bytes()
    assert b"co64" in data and b"stco" not in data
    assert np.array_equal(decoded(large), reference)
    assert ffmpeg_chapters(large) == ffmpeg_chapters(tmp_path / "small.m4b")
    assert MP4(large).info.length == pytest.approx(MP4(tmp_path / "small.m4b").info.length)


def test_a_stream_counted_before_lengths_were_kept_is_read_again(tmp_path: Path) -> None:
    stream = encode_stream(
        master(tmp_path / "m.flac", 22050, 1.0), tmp_path / "s", "m4b", Encoding(), owner=OWNER
    )
    recorded = json.loads(count_path(stream.path).read_text(encoding="utf-8"))
    lengths = frame_lengths(stream, "m4b")
    assert len(lengths) == stream.frames and lengths.sum() == stream.path.stat().st_size
    del recorded["lengths"]
    count_path(stream.path).write_text(json.dumps(recorded), encoding="utf-8")
    assert np.array_equal(frame_lengths(stream, "m4b"), lengths)


def test_lengths_that_do_not_match_the_stream_fail_and_leave_no_file(tmp_path: Path) -> None:
    streams = chapters(tmp_path, "m4b", 22050, [1.0, 1.0])
    lengths = frame_lengths(streams[1], "m4b")
    bad = np.array(lengths)
    bad[3], bad[4] = bad[3] + 5, bad[4] - 5  # the same total, frames cut in the wrong place
    book = tmp_path / "book.m4b"
    with book.open("wb") as out, pytest.raises(EngineError, match="do not match"):
        mp4.write_m4b(
            [mp4.AdtsSource(streams[1].path, bad)],
            out,
            config=mp4.AacConfig(2, 7, 22050, 1),
            priming=1024,
            chapters=[],
            tag_room=0,
        )
