"""Mastering presets end to end: the example book rendered with `master: acx` (and others)
through the CLI, its files measured back with meters independent of the ffmpeg that mastered
them: numpy for RMS and the noise floor, pyloudnorm for integrated loudness (ITU-R BS.1770),
4x oversampling (scipy) for true peak, soundfile's own MP3 decoder, mutagen for the encoding."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyloudnorm
import pytest
import soundfile
from mutagen.mp3 import MP3, BitrateMode
from scipy.signal import resample_poly

from helpers.examples import BOOK_DIR, REPO, example_book, invoke, render_offline
from songbatch.assemble import _silences
from songbatch.presets import preset
from songbatch.tagging import read_chapters


def book_with(workspace: Path, master: str, formats: str = "[mp3, m4b]") -> Path:
    """The example book mastered with `master`."""
    return example_book(workspace, formats=formats, extra=f"\nmaster: {master}")


def chapters(workspace: Path) -> list[Path]:
    return sorted((workspace / "outputs" / BOOK_DIR).glob("*.mp3"))


def decoded(path: Path) -> tuple[npt.NDArray[np.float64], int]:
    audio, rate = soundfile.read(str(path), dtype="float64")
    return audio, rate


def rms_db(audio: npt.NDArray[np.float64]) -> float:
    return float(20 * np.log10(np.sqrt(np.mean(np.square(audio))) + 1e-12))


def true_peak_db(audio: npt.NDArray[np.float64]) -> float:
    return float(20 * np.log10(np.abs(resample_poly(audio, 4, 1)).max()))


def windows_db(audio: npt.NDArray[np.float64], rate: int, seconds: float) -> list[float]:
    size = int(seconds * rate)
    return [rms_db(audio[i : i + size]) for i in range(0, len(audio) - size + 1, size)]


def silence_s(audio: npt.NDArray[np.float64], rate: int, *, from_end: bool) -> float:
    """How long the file stays under -50 dB (10 ms windows) from its start, or its end."""
    levels = windows_db(audio[::-1] if from_end else audio, rate, 0.01)
    quiet = next((i for i, level in enumerate(levels) if level > -50), len(levels))
    return quiet * 0.01


@pytest.fixture(scope="module")
def acx_book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("acx")
    result = render_offline(workspace, book_with(workspace, "acx"))
    # The render checked its MP3s against the preset, as `songbatch check --preset acx` does.
    assert "3 file(s) against acx" in result.output
    return workspace


def test_an_acx_book_meets_acx_rules_by_an_independent_meter(acx_book: Path) -> None:
    files = chapters(acx_book)
    assert len(files) == 3
    for path in files:
        info = MP3(path).info
        assert (info.sample_rate, info.channels, info.bitrate) == (44_100, 1, 192_000), path
        assert info.bitrate_mode is BitrateMode.CBR
        audio, rate = decoded(path)
        assert -23.0 <= rms_db(audio) <= -18.0, path
        assert true_peak_db(audio) <= -3.0, path
        floor = min(windows_db(audio, rate, 0.5))
        # Room tone: under ACX's -60 dB, but a quiet room, not digital zero.
        assert -90.0 < floor <= -60.0, (path, floor)
        assert 0.5 <= silence_s(audio, rate, from_end=False) <= 1.0, path
        assert 1.0 <= silence_s(audio, rate, from_end=True) <= 5.0, path


def test_an_acx_book_keeps_only_its_mastered_chapters_in_the_work_folder(acx_book: Path) -> None:
    """Under a preset the chapters are mastered from their chunks: no unmastered FLAC of a
    chapter is written to be decoded again (a 10-hour book's would be about 1.5 GB)."""
    work = [p.name for p in (acx_book / ".songbatch" / "work").glob("*.flac")]
    assert len(work) == 3, work
    assert all(re.fullmatch(r"[0-9a-f]{64}-acx-m[0-9]+\.flac", name) for name in work), work


def test_mastering_sums_the_rms_astats_reads(tmp_path: Path) -> None:
    """The level mastering starts from is summed in Python as the chunks are read, where it
    was an ffmpeg pass of its own: the figure `check`'s meter (astats) reads."""
    from songbatch.audio import Segment, segments_audio
    from songbatch.mastering import rms_db as mastering_rms
    from songbatch.quality import level

    rate = 22_050
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 0.05, (rate * 20, 2)) * np.linspace(0.1, 1, rate * 20)[:, None]
    path = tmp_path / "chapter.flac"
    soundfile.write(str(path), noise.astype(np.float32), rate, subtype="PCM_24")
    laid = segments_audio([Segment(path), Segment(silence_s=3.0)], sample_rate=rate, channels=2)
    master = tmp_path / "master.flac"
    soundfile.write(str(master), np.concatenate([noise, np.zeros((rate * 3, 2))]), rate, "PCM_24")
    assert mastering_rms(laid.blocks()) == pytest.approx(level(master, "rms"), abs=0.001)


def _chunk(path: Path, samples: npt.NDArray[np.float64], rate: int) -> Path:
    from songbatch.audio import write_chunk
    from songbatch.engines.base import RenderResult

    write_chunk(path, RenderResult(samples.astype(np.float32), rate), key=path.stem)
    return path


def test_a_chapters_rms_is_known_from_its_chunks_power_without_reading_them(
    tmp_path: Path,
) -> None:
    """Each chunk records its power as it is written, so the level ACX masters from needs no
    read of the chapter; it is the figure reading every sample gives, and a chunk that
    carries none (or is read changed) sends mastering back to reading."""
    from songbatch.audio import Segment, segments_audio, tagged_rms_db
    from songbatch.mastering import rms_db as read_rms

    rate = 22_050
    rng = np.random.default_rng(3)
    first = _chunk(tmp_path / "a.flac", rng.normal(0, 0.1, rate * 3), rate)
    second = _chunk(tmp_path / "b.flac", rng.normal(0, 0.02, rate * 2), rate)
    segments = [Segment(first, silence_s=0.7), Segment(silence_s=1.5), Segment(second)]
    for channels in (1, 2):  # mono chunks in a stereo master are repeated
        laid = segments_audio(segments, sample_rate=rate, channels=channels)
        assert laid.known_rms_db is not None
        known = laid.known_rms_db()
        assert known == pytest.approx(read_rms(laid.blocks()), abs=0.001)
    untagged = tmp_path / "c.flac"
    soundfile.write(str(untagged), rng.normal(0, 0.1, rate), rate, subtype="PCM_24")
    assert tagged_rms_db([*segments, Segment(untagged)], rate, 1) is None
    assert tagged_rms_db(segments, 44_100, 1) is None  # resampled as it is read
    broken = tmp_path / "d.flac"
    broken.write_bytes(b"not a flac file at all")
    assert tagged_rms_db([*segments, Segment(broken)], rate, 1) is None  # the read says why


def test_acx_masters_tagged_chunks_in_one_read_and_others_in_two(tmp_path: Path) -> None:
    import dataclasses

    from songbatch.audio import Segment, segments_audio
    from songbatch.mastering import master_to

    rate = 22_050
    tone = 0.2 * np.sin(2 * np.pi * 180 * np.arange(rate * 4) / rate)
    tagged = _chunk(tmp_path / "tagged.flac", tone, rate)
    untagged = tmp_path / "untagged.flac"
    soundfile.write(str(untagged), tone, rate, subtype="PCM_24")
    for chunk, reads in ((tagged, 1), (untagged, 2)):
        laid = segments_audio([Segment(chunk, silence_s=1.0)], sample_rate=rate, channels=1)
        opened: list[int] = []

        def counted(laid: Any = laid, opened: list[int] = opened) -> Any:
            opened.append(1)
            return laid.open_blocks()

        out = tmp_path / f"{chunk.stem}-mastered.flac"
        master_to(dataclasses.replace(laid, open_blocks=counted), out, preset("acx"), name="x")
        assert len(opened) == reads, chunk.name
        assert soundfile.info(str(out)).samplerate == 44_100


def test_the_chapters_of_a_book_play_at_one_level(acx_book: Path) -> None:
    levels = []
    for path in chapters(acx_book):
        audio, rate = decoded(path)
        levels.append(pyloudnorm.Meter(rate).integrated_loudness(audio))
    assert max(levels) - min(levels) < 1.0, levels


def test_the_mastered_m4b_keeps_a_mark_at_every_chapter(acx_book: Path) -> None:
    [m4b] = (acx_book / "outputs" / BOOK_DIR).glob("*.m4b")
    marks = read_chapters(m4b)
    assert [title for title, _ in marks] == ["The Lamp", "The Storm", "The Letter"]
    lengths = [MP3(path).info.length for path in chapters(acx_book)]
    starts = np.cumsum([0.0, *lengths[:-1]])
    # Within AAC and MP3 framing (tens of ms) of where each chapter file says it starts.
    assert np.allclose([start_ms / 1000 for _, start_ms in marks], starts, atol=0.1)


@pytest.mark.parametrize(("master", "target"), [("podcast", -16.0), ("spoken", -19.0)])
def test_streaming_presets_reach_their_loudness(tmp_path: Path, master: str, target: float) -> None:
    render_offline(tmp_path, book_with(tmp_path, master, formats="[flac]"))
    files = sorted((tmp_path / "outputs" / BOOK_DIR).glob("*.flac"))
    assert len(files) == 3
    for path in files:
        audio, rate = decoded(path)
        assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(target, abs=0.5)
        assert true_peak_db(audio) <= -1.0


def test_another_preset_remasters_without_rendering_again(tmp_path: Path) -> None:
    book = book_with(tmp_path, "none", formats="[flac]")
    render_offline(tmp_path, book)
    [first] = sorted((tmp_path / "outputs" / BOOK_DIR).glob("*.flac"))[:1]
    before, rate = decoded(first)
    result = render_offline(tmp_path, book_with(tmp_path, "spoken", formats="[flac]"))
    assert "rendered 0 job(s)" in result.output
    after, _ = decoded(first)
    assert pyloudnorm.Meter(rate).integrated_loudness(after) == pytest.approx(-19.0, abs=0.5)
    assert abs(rms_db(after) - rms_db(before)) > 0.5  # it changed: the espeak voice is not -19


def test_an_unknown_preset_is_a_one_line_error_naming_the_field(tmp_path: Path) -> None:
    result = render_offline(tmp_path, book_with(tmp_path, "loud"), code=2)
    [line] = result.output.strip().splitlines()
    assert "example-book.yaml:" in line and "master" in line
    assert "none, acx, podcast, spoken" in line
    assert not (tmp_path / ".songbatch").exists()


def test_acx_holds_the_head_and_tail_silence_inside_its_bounds() -> None:
    acx = preset("acx")
    assert _silences(500, [350, 2000], acx) == (500, [350, 2000])
    assert _silences(0, [350, 300], acx) == (500, [350, 1200])  # too short a head and tail
    assert _silences(3000, [350, 9000], acx) == (700, [350, 4000])  # too long
    assert _silences(0, [350, 300], preset("podcast")) == (0, [350, 300])  # no such rules


def test_a_profiles_preset_masters_the_books_that_name_none(tmp_path: Path) -> None:
    profile = tmp_path / "spoken-offline.yaml"
    text = (REPO / "profiles" / "offline.yaml").read_text(encoding="utf-8")
    profile.write_text(text.replace("name: offline", "name: spoken-offline") + "master: spoken\n")
    book = book_with(tmp_path, "none", formats="[flac]")
    book.write_text(book.read_text(encoding="utf-8").replace("master: none\n", ""), "utf-8")
    args = ("render", str(book), "--workspace", str(tmp_path), "--profile", str(profile))
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    [first, *_] = sorted((tmp_path / "outputs" / BOOK_DIR).glob("*.flac"))
    audio, rate = decoded(first)
    assert pyloudnorm.Meter(rate).integrated_loudness(audio) == pytest.approx(-19.0, abs=0.5)
    # The book's own `master: none` wins over its profile's.
    book.write_text(book.read_text(encoding="utf-8") + "master: none\n", "utf-8")
    assert invoke(*args).exit_code == 0
    unmastered, _ = decoded(first)
    assert abs(pyloudnorm.Meter(rate).integrated_loudness(unmastered) + 19.0) > 0.5


def test_a_written_file_that_fails_its_presets_check_makes_the_run_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rule the mastering cannot meet (an ACX whose RMS window sits under the level it
    masters to, patched in: no real preset contradicts itself): each file is reported with
    the rule it fails, the files stay written, and the run says why it exits 1."""
    import dataclasses

    from songbatch import presets

    acx = presets.PRESETS[presets.PresetName.ACX]
    strict = dataclasses.replace(acx, level_range=(-30.0, -25.0))
    monkeypatch.setitem(presets.PRESETS, presets.PresetName.ACX, strict)
    result = render_offline(tmp_path, book_with(tmp_path, "acx", formats="[mp3]"), code=1)
    assert result.output.count("fails acx: level") == 3
    assert "3 file(s) failing their preset's check" in result.output
    assert len(chapters(tmp_path)) == 3


def test_songbatch_check_passes_the_acx_book_it_rendered(acx_book: Path) -> None:
    """Issue 12's bar: the example book rendered with `master: acx` passes `songbatch check
    --preset acx`, every file of it, the .m4b included."""
    book = acx_book / "manifests" / "example-book.yaml"
    result = invoke("check", str(book), "--preset", "acx", "--workspace", str(acx_book), "--json")
    assert result.exit_code == 0, result.output
    assert result.output.count('"passed": true') >= 4  # three MP3s and the .m4b
    assert '"passed": false' not in result.output


def test_a_stop_ends_a_mastering_pass_and_its_ffmpeg(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM sets the assembly's cancel event: a measuring ffmpeg, which prints
    nothing until the end, is killed rather than waited for."""
    import threading

    from songbatch.audio import Segment, segments_audio
    from songbatch.errors import Interrupted
    from songbatch.mastering import master_to

    rate = 22_050
    tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(rate * 120) / rate)
    source = tmp_path / "chapter.flac"
    soundfile.write(str(source), tone.astype(np.float32), rate, subtype="PCM_24")
    cancel = threading.Event()
    laid = segments_audio([Segment(source)], sample_rate=rate, channels=1, cancel=cancel)
    cancel.set()
    with pytest.raises(Interrupted):
        master_to(laid, tmp_path / "mastered.flac", preset("acx"), name="chapter", cancel=cancel)
