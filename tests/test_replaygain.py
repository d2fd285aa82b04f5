"""ReplayGain 2.0 on albums: the example album rendered through the CLI, each track's and the
album's gains and peaks read back from every format and checked against an independent
re-measure (pyloudnorm on soundfile's decode, 4x-oversampled peaks with scipy)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile
from mutagen.oggopus import OggOpus
from scipy.signal import resample_poly

from helpers.examples import ALBUM_DIR, example_album, invoke, render_offline
from songbatch.replaygain import Loudness, album_loudness, r128_gain
from songbatch.tagging import read_tags


@pytest.fixture(scope="module")
def album(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("album")
    render_offline(workspace, example_album(workspace, formats="[mp3, flac, opus, wav]"))
    return workspace / "outputs" / ALBUM_DIR


def loudness(path: Path) -> tuple[float, float, float]:
    """(integrated LUFS, true peak dB, seconds) by the independent meters."""
    audio, rate = soundfile.read(str(path), dtype="float64")
    peak = 20 * math.log10(np.abs(resample_poly(audio, 4, 1, axis=0)).max())
    return pyloudnorm.Meter(rate).integrated_loudness(audio), peak, len(audio) / rate


# Gains are measured on the lossless master every format is encoded from: a lossless file
# re-measures to within rounding, an MP3 (its encoder drops what it cannot hear) to about 0.5 dB.
@pytest.mark.parametrize(("suffix", "within_db"), [(".flac", 0.1), (".wav", 0.1), (".mp3", 1.0)])
def test_every_track_carries_its_own_and_the_albums_gain(
    album: Path, suffix: str, within_db: float
) -> None:
    tracks = sorted(album.glob(f"*{suffix}"))
    assert len(tracks) == 2
    gains = [read_tags(path).replaygain for path in tracks]
    measured = [loudness(path) for path in tracks]
    for gain, (lufs, peak, _) in zip(gains, measured, strict=True):
        assert gain is not None and gain.album_gain_db is not None
        assert gain.track_gain_db == pytest.approx(-18.0 - lufs, abs=within_db)
        assert 20 * math.log10(gain.track_peak) == pytest.approx(peak, abs=max(0.2, within_db))
    # One album gain for every track, from the album played through, so the tracks keep
    # their loudness relative to each other.
    assert len({gain.album_gain_db for gain in gains if gain}) == 1
    whole = album_loudness([Loudness(lufs, peak, s) for lufs, peak, s in measured])
    assert gains[0] is not None and gains[0].album_gain_db is not None
    assert gains[0].album_gain_db == pytest.approx(-18.0 - whole.lufs, abs=within_db)
    assert gains[0].album_peak == pytest.approx(max(g.track_peak for g in gains if g), abs=1e-6)


def test_opus_tracks_carry_r128_gains_instead(album: Path) -> None:
    for path in sorted(album.glob("*.opus")):
        comments = OggOpus(path).tags
        assert comments is not None
        flac = read_tags(path.with_suffix(".flac")).replaygain
        assert flac is not None and flac.album_gain_db is not None
        assert comments["R128_TRACK_GAIN"] == [r128_gain(flac.track_gain_db)]
        assert comments["R128_ALBUM_GAIN"] == [r128_gain(flac.album_gain_db)]
        assert "REPLAYGAIN_TRACK_GAIN" not in comments  # RFC 7845: not in Opus


def test_r128_gains_are_q7_8_relative_to_minus_23_lufs() -> None:
    assert r128_gain(0.0) == str(-5 * 256)  # at -18 LUFS a track is 5 dB over -23
    assert r128_gain(5.0) == "0"
    assert r128_gain(-200.0) == "-32768"  # clamped to 16 bits


def test_album_loudness_is_the_length_weighted_energy_mean() -> None:
    loud, quiet = Loudness(-10.0, -1.0, 30.0), Loudness(-20.0, -6.0, 30.0)
    whole = album_loudness([loud, quiet])
    assert whole.lufs == pytest.approx(10 * math.log10((10**-1 + 10**-2) / 2))
    assert whole.true_peak_db == -1.0 and whole.duration_s == 60.0
    assert album_loudness([Loudness(-math.inf, -math.inf, 5.0)]).lufs == -math.inf


def test_tracks_written_before_the_album_is_whole_get_its_gain_when_it_is(tmp_path: Path) -> None:
    """A track that fails leaves the album unfinished: the others are written with their own
    gain only; once the last track renders, every track carries the album's."""
    from helpers.books import album_manifest, synthetic_profile

    synthetic_profile(tmp_path, latency_ms=10, devices="cpu:1")
    tracks = [("calm piano", "3s"), ("soft strings POISON", "2s")]
    manifest = album_manifest(tmp_path, tracks, profile="synthetic.yaml", title="Half Album")
    args = ("render", str(manifest), "--workspace", str(tmp_path))
    assert invoke(*args).exit_code == 1  # the poisoned track fails for good
    [first] = sorted((tmp_path / "outputs").rglob("*.flac"))
    early = read_tags(first).replaygain
    assert early is not None and early.album_gain_db is None
    manifest.write_text(manifest.read_text(encoding="utf-8").replace(" POISON", ""), "utf-8")
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    whole = [read_tags(path).replaygain for path in sorted((tmp_path / "outputs").rglob("*.flac"))]
    assert len(whole) == 2 and all(g is not None and g.album_gain_db is not None for g in whole)
    later = whole[0]
    assert later is not None and later.track_gain_db == early.track_gain_db  # same audio
