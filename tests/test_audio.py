"""Chunk files, streaming assembly and encoding, with the real ffmpeg, soundfile and mutagen."""

from __future__ import annotations

import hashlib
import threading
import zlib
from pathlib import Path

import mutagen
import numpy as np
import psutil
import pytest
import soundfile as sf
from mutagen.flac import FLAC

from songbatch.audio import (
    FORMATS,
    ChapterMark,
    Format,
    Segment,
    assemble_master,
    audio_duration_ms,
    chapter_marks,
    encode,
    resample_linear,
    write_chunk,
)
from songbatch.engines.base import RenderResult
from songbatch.errors import EngineError, Interrupted
from songbatch.ffmpeg import FfmpegFailed, run_ffmpeg
from songbatch.fsutil import file_sha256, is_own_temp, replace_durably, sweep_temps, temp_sibling
from songbatch.tagging import Tags, read_chapters, read_tags

OWNER = "0123456789abcdef"  # a workspace id
SR = 22050


def tone(seconds: float, freq: float = 440.0, sr: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    mono = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)


def chunk(
    path: Path, seconds: float, *, sr: int = SR, channels: int = 1, freq: float = 440.0
) -> Path:
    write_chunk(path, RenderResult(tone(seconds, freq, sr, channels), sr), key=path.stem)
    return path


def png_bytes() -> bytes:
    """A valid 1x1 PNG."""

    def block(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + block(b"IHDR", header) + block(b"IDAT", pixels) + block(b"IEND", b"")
    )


FULL_TAGS = Tags(
    title="Chapter One",
    album="The Book",
    artist="An Author",
    album_artist="An Author",
    narrator="A Narrator",
    composer="A Composer",
    track=(1, 12),
    disc=(1, 2),
    genre="Audiobook",
    year=2024,
    language="eng",
    description="A book about things.",
    comment="made by songbatch",
)


# --- chunks ----------------------------------------------------------------------------------


def test_write_chunk_round_trip_and_sha256(tmp_path: Path) -> None:
    path = tmp_path / ".abc.1.tmp"
    audio = tone(1.5)
    digest = write_chunk(path, RenderResult(audio, SR), key="abc123")
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == file_sha256(path)
    info = sf.info(path)
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("FLAC", "PCM_24", SR, 1)
    back, _ = sf.read(path, dtype="float32")
    assert back.shape == audio.shape
    assert np.abs(back - audio).max() < 1e-6  # 24-bit quantisation
    assert FLAC(path)["SONGBATCH_KEY"] == ["abc123"]
    assert audio_duration_ms(path) == 1500


def test_write_chunk_clips_and_rejects_nan(tmp_path: Path) -> None:
    loud = np.array([0.0, 1.5, -2.0, 0.5] * 1000, dtype=np.float32)
    write_chunk(tmp_path / "loud.flac", RenderResult(loud, SR), key="loud")
    back, _ = sf.read(tmp_path / "loud.flac", dtype="float32")
    assert back.max() <= 1.0 and back.min() >= -1.0 and back[1] > 0.99
    bad = np.array([0.0, np.nan], dtype=np.float32)
    with pytest.raises(EngineError):
        write_chunk(tmp_path / "bad.flac", RenderResult(bad, SR), key="bad")


def test_replace_durably_replaces_atomically(tmp_path: Path) -> None:
    final = tmp_path / "out.flac"
    final.write_bytes(b"old")
    tmp = temp_sibling(final, OWNER)
    tmp.write_bytes(b"new")
    replace_durably(tmp, final)
    assert is_own_temp(tmp.name, OWNER)
    assert final.read_bytes() == b"new" and not tmp.exists()


def test_a_sweep_takes_only_its_own_workspaces_temp_files(tmp_path: Path) -> None:
    final = tmp_path / "01 - Chapter.mp3"
    mine = temp_sibling(final, OWNER)
    theirs = temp_sibling(final, "fedcba9876543210")
    strangers = [tmp_path / ".01 - Chapter.mp3.tmp", tmp_path / ".x.tmp", tmp_path / "a.tmp"]
    for path in strangers:
        path.write_bytes(b"someone else's")
    assert not is_own_temp(theirs.name, OWNER)
    assert sweep_temps(tmp_path, OWNER) == 1
    assert not mine.exists() and theirs.exists()
    assert all(path.exists() for path in strangers)


# --- assembly --------------------------------------------------------------------------------


def test_assemble_master_with_silences_has_exact_length(tmp_path: Path) -> None:
    a = chunk(tmp_path / "a.flac", 1.0)
    b = chunk(tmp_path / "b.flac", 2.25, freq=330)
    segments = [Segment(a), Segment(silence_s=0.5), Segment(b), Segment(a, silence_s=0.3)]
    out = tmp_path / "master.flac"
    ms = assemble_master(segments, out, sample_rate=SR, channels=1, owner=OWNER)
    expected = round(1.0 * SR) * 2 + round(0.5 * SR) + round(2.25 * SR) + round(0.3 * SR)
    info = sf.info(out)
    assert abs(info.frames - expected) <= 1
    assert ms == round(expected * 1000 / SR)
    assert (info.subtype, info.samplerate, info.channels) == ("PCM_24", SR, 1)
    audio, _ = sf.read(out, dtype="float32")
    gap = audio[SR : SR + round(0.5 * SR)]
    assert np.abs(gap).max() == 0.0
    assert not list(tmp_path.glob(".*.tmp"))


def test_assemble_master_upmixes_to_stereo(tmp_path: Path) -> None:
    mono = chunk(tmp_path / "mono.flac", 0.5)
    out = tmp_path / "stereo.flac"
    assemble_master(
        [Segment(mono), Segment(silence_s=0.25)], out, sample_rate=SR, channels=2, owner=OWNER
    )
    audio, _ = sf.read(out, dtype="float32")
    assert audio.shape == (round(0.5 * SR) + round(0.25 * SR), 2)
    assert np.array_equal(audio[:, 0], audio[:, 1])
    assert np.abs(audio[: SR // 2, 0]).max() > 0.25


def test_assemble_master_resamples_other_rates(tmp_path: Path) -> None:
    other = chunk(tmp_path / "24k.flac", 1.0, sr=24000, freq=200)
    out = tmp_path / "master.flac"
    ms = assemble_master([Segment(other)], out, sample_rate=SR, channels=1, owner=OWNER)
    audio, sr = sf.read(out, dtype="float32")
    assert sr == SR and audio.shape[0] == SR and ms == 1000
    # Still a 200 Hz tone: the strongest FFT bin is at 200 Hz (1 Hz bins over one second).
    assert abs(int(np.argmax(np.abs(np.fft.rfft(audio)))) - 200) <= 1


def test_resample_linear_keeps_length_ratio() -> None:
    audio = np.ones((32000, 2), dtype=np.float32)
    assert resample_linear(audio, 32000, 22050).shape == (22050, 2)
    assert resample_linear(audio[:0], 32000, 22050).shape == (0, 2)


# --- encoding --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def masters(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two mono masters: 1.2 s and 0.8 s."""
    root = tmp_path_factory.mktemp("masters")
    paths = []
    for i, seconds in enumerate((1.2, 0.8)):
        src = chunk(root / f"c{i}.flac", seconds, freq=300 + 100 * i)
        out = root / f"m{i}.flac"
        assemble_master([Segment(src)], out, sample_rate=SR, channels=1, owner=OWNER)
        paths.append(out)
    return paths


@pytest.fixture(scope="module")
def cover(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cover") / "cover.png"
    path.write_bytes(png_bytes())
    return path


def probe(path: Path) -> tuple[float, int, int]:
    """(seconds, sample rate, channels) as a decoder sees them.

    soundfile decodes MP3 gaplessly (mutagen's MP3 length includes encoder delay and padding)
    and knows Opus decodes at 48 kHz; it cannot read MP4, where mutagen is exact.
    """
    try:
        info = sf.info(path)
        return float(info.duration), int(info.samplerate), int(info.channels)
    except sf.LibsndfileError:
        mp4 = mutagen.File(path).info
        return float(mp4.length), int(mp4.sample_rate), int(mp4.channels)


EXPECTED_RATE = {"m4b": SR, "mp3": SR, "flac": SR, "opus": 48000, "wav": SR}


@pytest.mark.parametrize("fmt", FORMATS)
def test_encode_each_format_with_all_tags(
    fmt: Format, masters: list[Path], cover: Path, tmp_path: Path
) -> None:
    out = tmp_path / f".book.{fmt}.tmp"  # encode writes to exactly the name it is given
    encode(masters, out, fmt, tags=FULL_TAGS, cover=cover)
    assert out.exists() and not (tmp_path / f"book.{fmt}").exists()

    seconds, rate, channels = probe(out)
    assert abs(seconds - 2.0) < 0.05
    assert rate == EXPECTED_RATE[fmt]
    assert channels == 1

    back = read_tags(out)
    expected = {k: v for k, v in vars(FULL_TAGS).items() if k not in ("cover", "cover_bytes")}
    assert {k: v for k, v in vars(back).items() if k in expected} == expected
    assert back.cover_bytes == cover.read_bytes()


def test_encode_m4b_chapters_and_audiobook_kind(masters: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "book.m4b"
    marks = [
        ChapterMark("Opening", 0, 700),
        ChapterMark("Middle; with = odd # chars", 700, 1400),
        ChapterMark("End", 1400, 2000),
    ]
    encode(masters, out, "m4b", tags=Tags(title="Book", narrator="N"), chapters=marks)
    assert read_chapters(out) == [(m.title, m.start_ms) for m in marks]
    mp4 = mutagen.File(out)
    assert mp4.tags["stik"] == [2]
    assert mp4.tags["\xa9wrt"] == ["N"]  # Audiobookshelf reads the narrator from the composer
    assert audio_duration_ms(out) == pytest.approx(2000, abs=50)
    # Tagging rewrote the moov atom: the file must still decode cleanly end to end.
    run_ffmpeg(["-xerror", "-i", str(out), "-f", "null", "-"])
    # faststart: the moov atom precedes the audio data.
    head = out.read_bytes()
    assert head.index(b"moov") < head.index(b"mdat")


def test_encode_mp3_keeps_chapters_as_id3_chap(masters: list[Path], tmp_path: Path) -> None:
    out = tmp_path / "book.mp3"
    marks = chapter_marks(["One", "Two"], [1200, 800])
    encode(masters, out, "mp3", tags=Tags(title="Book"), chapters=marks)
    id3 = mutagen.File(out).tags
    chaps = sorted(id3.getall("CHAP"), key=lambda c: c.start_time)
    assert [c.start_time for c in chaps] == [0, 1200]
    assert id3.version[:2] == (2, 4)


def test_encode_stereo_uses_stereo_bitrate(tmp_path: Path) -> None:
    src = chunk(tmp_path / "s.flac", 1.0, channels=2)
    master = tmp_path / "m.flac"
    assemble_master([Segment(src)], master, sample_rate=SR, channels=2, owner=OWNER)
    out = tmp_path / "s.m4b"
    encode([master], out, "m4b", tags=Tags(title="S"))
    info = mutagen.File(out).info
    assert info.channels == 2


def test_encode_reports_ffmpeg_errors(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.flac"
    bogus.write_bytes(b"not audio at all")
    with pytest.raises(EngineError) as caught:
        encode([bogus], tmp_path / "x.m4b", "m4b", tags=Tags(title="x"))
    assert caught.value.retryable is False
    assert "ffmpeg" in str(caught.value)


def test_encode_handles_quotes_in_paths(tmp_path: Path) -> None:
    folder = tmp_path / "it's here"
    folder.mkdir()
    src = chunk(folder / "c.flac", 0.5)
    master = folder / "m'1.flac"
    assemble_master([Segment(src)], master, sample_rate=SR, channels=1, owner=OWNER)
    out = folder / "o.flac"
    encode([master], out, "flac", tags=Tags(title="q"))
    assert abs(sf.info(out).duration - 0.5) < 0.01


def test_failed_encode_leaves_no_file(masters: list[Path], tmp_path: Path) -> None:
    out = tmp_path / ".book.m4b.tmp"
    with pytest.raises(EngineError) as caught:
        encode(masters, out, "m4b", tags=Tags(title="x"), bitrate="not-a-bitrate")
    assert "ffmpeg exited" in str(caught.value)
    assert not out.exists()


def test_a_cancelled_ffmpeg_is_killed_and_says_interrupted() -> None:
    """`cancel` set while ffmpeg works (ten hours of silence into nothing: it would run on for
    many seconds) raises Interrupted, and no ffmpeg is left running."""
    cancel = threading.Event()
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        with pytest.raises(Interrupted, match="interrupted while encoding"):
            run_ffmpeg(["-f", "lavfi", "-i", "anullsrc=d=36000", "-f", "null", "-"], cancel=cancel)
    finally:
        timer.cancel()
    assert cancel.is_set()
    assert not [child for child in psutil.Process().children() if "ffmpeg" in child.name()]


def test_a_failing_ffmpeg_says_its_last_lines() -> None:
    with pytest.raises(FfmpegFailed) as caught:
        run_ffmpeg(["-i", "/nonexistent/input.flac", "-f", "null", "-"])
    assert caught.value.returncode != 0 and not caught.value.retryable
    assert "/nonexistent/input.flac" in caught.value.tail
    assert str(caught.value) == f"ffmpeg exited {caught.value.returncode}: {caught.value.tail}"


def test_ffmpeg_is_found_by_variable_then_wheel_then_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    from songbatch import ffmpeg
    from songbatch.errors import EngineError

    def locate() -> str:
        ffmpeg.ffmpeg_exe.cache_clear()
        return ffmpeg.ffmpeg_exe()

    try:
        monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", "/opt/custom/ffmpeg")
        assert locate() == "/opt/custom/ffmpeg"
        monkeypatch.delenv("IMAGEIO_FFMPEG_EXE")
        assert "imageio_ffmpeg" in locate()  # the wheel's own binary
        real_import = builtins.__import__

        def no_wheel(name: str, *args: object, **kwargs: object) -> object:
            if name == "imageio_ffmpeg":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(builtins, "__import__", no_wheel)
        on_path = tmp_path / "ffmpeg"
        on_path.write_text("#!/bin/sh\n")
        on_path.chmod(0o755)
        monkeypatch.setenv("PATH", str(tmp_path))
        assert locate() == str(on_path)
        monkeypatch.setenv("PATH", str(tmp_path / "empty"))
        with pytest.raises(EngineError, match="install imageio-ffmpeg or put an ffmpeg on PATH"):
            locate()
    finally:
        ffmpeg.ffmpeg_exe.cache_clear()


def test_a_results_finish_step_runs_once_where_its_audio_is_first_read() -> None:
    """Chatterbox's watermark: the worker's writer thread reads the audio, so it runs there."""
    calls: list[int] = []

    def louder(audio: np.ndarray) -> np.ndarray:
        calls.append(1)
        return audio * 2

    result = RenderResult(np.full(SR, 0.25, np.float32), SR, finish=louder)
    assert result.duration_s == 1.0 and calls == []
    assert float(result.audio[0]) == 0.5 and float(result.audio[-1]) == 0.5
    assert calls == [1]
