"""`songbatch check`: files built to pass or to fail exactly one kind of rule are measured and
judged through the CLI as a person meets it; ffmpeg's meters agree with independent ones
(pyloudnorm's BS.1770 loudness, numpy's RMS); bad input is one line and exit 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from helpers.books import book_manifest, synthetic_profile
from songbatch.cli.main import app
from songbatch.ffmpeg import require_encoder, run_ffmpeg
from songbatch.presets import preset
from songbatch.quality import Rule, check_paths, judge, level, measure

SR = 44_100


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def db(value: float) -> float:
    return 10 ** (value / 20)


def speech_like(
    *,
    head_s: float = 0.7,
    tail_s: float = 2.0,
    rms_db: float = -20.0,
    noise_db: float = -70.0,
    sr: int = SR,
    seed: int = 1,
) -> np.ndarray:
    """Room tone (white noise at `noise_db` RMS) throughout; over it 1.5 s of "words" (a
    two-partial tone gated 0.3 s on, 0.1 s off), a 1 s paragraph pause and 1.5 s more, the
    words scaled so the whole file's RMS is `rms_db`."""
    rng = np.random.default_rng(seed)
    length = round((head_s + 4.0 + tail_s) * sr)
    t = np.arange(length) / sr
    tone = 0.6 * np.sin(2 * np.pi * 220 * t) + 0.4 * np.sin(2 * np.pi * 660 * t)
    gate = np.zeros(length)
    for start in (head_s, head_s + 2.5):
        for word in range(4):  # 4 x (0.3 on + 0.1 off) = 1.6 s, the last gap dropped
            on = round((start + 0.4 * word) * sr)
            gate[on : on + round(0.3 * sr)] = 1.0
            if word == 3:
                gate[on + round(0.3 * sr) : round((start + 1.5) * sr)] = 0.0
    words = tone * gate
    noise = rng.standard_normal(length) * db(noise_db)
    noise_power = float(np.mean(noise**2))
    words_power = float(np.mean(words**2))
    gain = math.sqrt(max(db(rms_db) ** 2 - noise_power, 0.0) / words_power)
    return (words * gain + noise).astype(np.float32)


def wav(path: Path, samples: np.ndarray, sr: int = SR) -> Path:
    sf.write(path, samples, sr, subtype="PCM_24")
    return path


def mp3(path: Path, samples: np.ndarray, *, rate: int = SR, quality: str = "-b:a 192k") -> Path:
    require_encoder("libmp3lame")
    source = wav(path.with_suffix(".src.wav"), samples)
    encode = ["-c:a", "libmp3lame", *quality.split(), "-ar", str(rate), "-ac", "1"]
    run_ffmpeg(["-i", str(source), *encode, str(path)])
    source.unlink()
    return path


def failed(path: Path, name: str = "acx") -> set[Rule]:
    return {r.rule for r in judge(measure(path), preset(name)) if not r.passed}


def numpy_rms_db(samples: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(samples.astype(np.float64) ** 2)))


# ---------------------------------------------------------------- the meters agree


def test_loudness_and_rms_agree_with_independent_meters(tmp_path: Path) -> None:
    import pyloudnorm

    samples = speech_like()
    path = wav(tmp_path / "book.wav", samples)
    measured = measure(path)
    read, sr = sf.read(path, dtype="float64")
    assert abs(measured.integrated_lufs - pyloudnorm.Meter(sr).integrated_loudness(read)) <= 0.5
    assert abs(measured.rms_db - numpy_rms_db(read)) <= 0.2
    assert abs(measured.rms_db - -20.0) <= 0.2
    # The quietest full 0.5 s window is room tone; the head and tail as built.
    assert abs(measured.noise_floor_db - -70.0) <= 1.0
    assert abs(measured.head_silence_s - 0.7) <= 0.05
    assert abs(measured.tail_silence_s - 2.0) <= 0.05
    assert measured.true_peak_dbtp >= 20 * math.log10(float(np.max(np.abs(read)))) - 0.1
    assert (measured.sample_rate, measured.channels, measured.codec) == (SR, 1, "pcm_s24le")
    # The light one-figure passes mastering uses read the same levels.
    assert level(path, "rms") == pytest.approx(measured.rms_db, abs=0.05)
    assert level(path, "lufs") == pytest.approx(measured.integrated_lufs, abs=0.05)
    assert abs(measured.duration_s - len(read) / sr) < 0.001


def test_a_stereo_file_at_another_rate_measures_its_own_rate(tmp_path: Path) -> None:
    mono = speech_like(sr=48_000)
    path = wav(tmp_path / "stereo.wav", np.stack([mono, mono], axis=1), sr=48_000)
    measured = measure(path)
    assert (measured.sample_rate, measured.channels) == (48_000, 2)
    assert abs(measured.rms_db - -20.0) <= 0.2
    assert failed(path) == {Rule.SAMPLE_RATE, Rule.CHANNELS}


# ------------------------------------------------------------- each fault, its rule


def test_a_good_acx_file_passes_every_acx_rule(tmp_path: Path) -> None:
    path = mp3(tmp_path / "good.mp3", speech_like())
    code, output = invoke("check", str(path), "--preset", "acx", "--json")
    assert code == 0, output
    doc = json.loads(output)
    [file] = doc["files"]
    assert doc["passed"] and file["passed"]
    rules = {r["rule"]: r for r in file["rules"]}
    assert set(rules) == {rule.value for rule in Rule}  # every ACX rule was checked
    m = file["measurement"]
    assert (m["sample_rate"], m["channels"], m["bitrate_kbps"], m["cbr"]) == (SR, 1, 192, True)
    assert m["codec"] == "mp3"
    assert -23 <= m["rms_db"] <= -18 and m["true_peak_dbtp"] <= -3


def test_too_loud_fails_level_and_peak_only(tmp_path: Path) -> None:
    path = mp3(tmp_path / "loud.mp3", speech_like(rms_db=-8.0))
    assert failed(path) == {Rule.LEVEL, Rule.TRUE_PEAK}


def test_clicks_over_the_true_peak_limit_fail_the_peak_only(tmp_path: Path) -> None:
    samples = speech_like()
    for at in (1.0, 3.3):
        samples[round(at * SR)] = 0.9
    path = wav(tmp_path / "clicks.wav", samples)
    assert failed(path) == {Rule.TRUE_PEAK}


def test_no_room_tone_fails_head_and_tail(tmp_path: Path) -> None:
    path = mp3(tmp_path / "tight.mp3", speech_like(head_s=0.0, tail_s=0.0))
    measured = measure(path)
    assert measured.head_silence_s < 0.1 and measured.tail_silence_s < 0.1
    assert failed(path) == {Rule.HEAD_SILENCE, Rule.TAIL_SILENCE}


def test_a_noisy_room_fails_the_noise_floor_only(tmp_path: Path) -> None:
    path = wav(tmp_path / "noisy.wav", speech_like(noise_db=-55.0))
    assert failed(path) == {Rule.NOISE_FLOOR}


def test_room_tone_just_under_the_floor_limit_is_still_head_and_tail_silence(
    tmp_path: Path,
) -> None:
    # Noise at -61 dB RMS peaks over -50 dB often; the silence threshold must not see words.
    path = mp3(tmp_path / "room.mp3", speech_like(noise_db=-61.0))
    measured = measure(path)
    assert abs(measured.head_silence_s - 0.7) <= 0.05
    assert abs(measured.tail_silence_s - 2.0) <= 0.05
    assert failed(path) == set()


def test_a_48_khz_mp3_fails_the_sample_rate_only(tmp_path: Path) -> None:
    path = mp3(tmp_path / "48k.mp3", speech_like(), rate=48_000)
    assert failed(path) == {Rule.SAMPLE_RATE}


def test_a_22_khz_mp3_fails_the_sample_rate_and_so_the_bitrate(tmp_path: Path) -> None:
    # MPEG-2 layer III (22.05 kHz) tops out at 160 kbit/s, under ACX's 192.
    path = mp3(tmp_path / "22k.mp3", speech_like(), rate=22_050, quality="-b:a 64k")
    assert failed(path) == {Rule.SAMPLE_RATE, Rule.BITRATE}


def test_a_vbr_mp3_fails_cbr(tmp_path: Path) -> None:
    path = mp3(tmp_path / "vbr.mp3", speech_like(), quality="-q:a 0")
    measured = measure(path)
    assert measured.cbr is False
    assert Rule.CBR in failed(path)
    # A VBR average can land either side of 192 kbit/s; nothing else may fail.
    assert failed(path) - {Rule.BITRATE} == {Rule.CBR}


def test_lufs_presets_check_integrated_loudness_and_true_peak(tmp_path: Path) -> None:
    path = wav(tmp_path / "book.wav", speech_like())
    measured = measure(path)
    results = judge(measured, preset("podcast"))
    assert [r.rule for r in results] == [Rule.LEVEL, Rule.TRUE_PEAK]
    assert results[0].value == measured.integrated_lufs
    assert not results[0].passed  # about -20 LUFS is not -16 +- 0.5
    assert judge(measured, preset("none")) == [] and judge(measured, None) == []


# -------------------------------------------------------------------- the command


def test_without_a_preset_everything_passes_and_the_screen_shows_measurements(
    tmp_path: Path,
) -> None:
    path = mp3(tmp_path / "loud.mp3", speech_like(rms_db=-8.0))
    code, output = invoke("check", str(path))
    assert code == 0, output
    assert "true peak" in output and "no preset" in output and "FAIL" not in output


def test_a_failing_rule_says_its_limit_on_the_screen_and_exits_1(tmp_path: Path) -> None:
    path = mp3(tmp_path / "tight.mp3", speech_like(head_s=0.0, tail_s=0.0))
    code, output = invoke("check", str(path), "--preset", "acx")
    assert code == 1, output
    assert "FAIL (limit 0.5..1 s)" in output and "FAIL (limit 1..5 s)" in output
    assert "1 failed" in output


def test_a_folder_checks_its_audio_files_and_skips_dot_folders(tmp_path: Path) -> None:
    folder = tmp_path / "book"
    (folder / ".songbatch").mkdir(parents=True)
    wav(folder / "01.wav", speech_like())
    wav(folder / ".songbatch" / "chunk.wav", speech_like())
    (folder / "notes.txt").write_text("not audio", encoding="utf-8")
    code, output = invoke("check", str(folder), "--json")
    assert code == 0, output
    assert [Path(f["path"]).name for f in json.loads(output)["files"]] == ["01.wav"]


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "no such file or folder"),
        (lambda p: p.write_text("not audio", encoding="utf-8"), "cannot read it"),
        (lambda p: p.write_bytes(b"RIFF\x00\x00"), ""),
    ],
)
def test_bad_input_is_one_line_naming_the_file_and_exit_2(
    tmp_path: Path, make: object, message: str
) -> None:
    path = tmp_path / "broken.mp3"
    make(path)  # type: ignore[operator]
    code, output = invoke("check", str(path), "--preset", "acx")
    assert code == 2, output
    assert str(path) in output and message in output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1


def test_an_unknown_preset_is_a_usage_error() -> None:
    code, _ = invoke("check", "x.wav", "--preset", "loud")
    assert code == 2


def test_a_manifest_checks_its_rendered_outputs(tmp_path: Path) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    manifest = book_manifest(tmp_path, chapters=2, sentences=1, formats="[flac]")
    code, output = invoke("check", str(manifest), "--workspace", str(tmp_path))
    assert code == 2 and "never planned" in output, output
    result = CliRunner().invoke(app, ["render", str(manifest), "--workspace", str(tmp_path)])
    assert result.exit_code == 0, result.output
    files = check_paths([manifest], tmp_path)
    assert [f.suffix for f in files] == [".flac", ".flac"]
    code, output = invoke("check", str(manifest), "--workspace", str(tmp_path), "--json")
    assert code == 0, output
    assert [f["path"] for f in json.loads(output)["files"]] == [str(f) for f in files]
    files[1].unlink()
    code, output = invoke("check", str(manifest), "--workspace", str(tmp_path))
    assert code == 2 and "not rendered yet" in output, output


def test_tags_are_read_back_and_digital_silence_is_null_in_json(tmp_path: Path) -> None:
    from songbatch.tagging import Tags, write_tags

    path = mp3(tmp_path / "tagged.mp3", speech_like())
    write_tags(path, "mp3", Tags(title="Chapter 1", artist="An Author", album="A Book"))
    assert measure(path).tags == {"title": "Chapter 1", "artist": "An Author", "album": "A Book"}
    silent = wav(tmp_path / "silent.wav", np.zeros(SR * 2, dtype=np.float32))
    code, output = invoke("check", str(silent), "--preset", "acx", "--json")
    assert code == 1, output  # no level at all, and no words between head and tail
    m = json.loads(output)["files"][0]["measurement"]
    assert m["rms_db"] is None and m["noise_floor_db"] is None and m["true_peak_dbtp"] is None
