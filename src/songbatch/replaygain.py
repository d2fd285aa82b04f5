"""ReplayGain 2.0 for albums: what a player should change each track by to play it at the
reference level, alone (track gain) or within its album (album gain, one figure for every
track, so their relative loudness stays), with the peaks that bound it.

ReplayGain 2.0 measures with ITU-R BS.1770 (the loudness `quality.measure` reads from ffmpeg's
ebur128) against a -18 LUFS reference. The album's loudness is the tracks' energy mean
weighted by their length: the integrated loudness of the album played through, up to the
gating of its quietest blocks. Peaks are true peaks (ReplayGain 2.0 allows them), as linear
full-scale ratios.

Measurements are cached beside the master they measure (`<master key>.loudness.json`),
content-keyed like it: an album's gain needs every track's, and those were measured when each
track was assembled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from songbatch.fsutil import replace_durably, temp_sibling

REFERENCE_LUFS = -18.0
OPUS_REFERENCE_LUFS = -23.0  # RFC 7845: R128 gains are relative to EBU R128's -23 LUFS


@dataclass(frozen=True)
class Loudness:
    lufs: float
    true_peak_db: float
    duration_s: float


@dataclass(frozen=True)
class ReplayGain:
    track_gain_db: float
    track_peak: float  # linear, 1.0 = full scale
    album_gain_db: float | None = None  # None until every track of the album is known
    album_peak: float | None = None

    def __str__(self) -> str:  # part of an output's key: two decimals, as the tags hold it
        album = "" if self.album_gain_db is None else f" album {self.album_gain_db:.2f}"
        return f"track {self.track_gain_db:.2f}{album}"


LOUDNESS_SUFFIX = ".loudness.json"


def loudness_path(folder: Path, key: str) -> Path:
    """Where the loudness of the master keyed `key` is kept: in the master's folder."""
    return folder / f"{key}{LOUDNESS_SUFFIX}"


def loudness_of(master: Path, key: str, *, owner: str) -> Loudness:
    """The master's loudness, measured once and kept beside it."""
    cached = loudness_path(master.parent, key)
    try:
        data = json.loads(cached.read_text(encoding="utf-8"))
        return Loudness(data["lufs"], data["true_peak_db"], data["duration_s"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    # Here, not at the top: quality reads tags through tagging, which imports this module.
    from songbatch.quality import measure

    measured = measure(master)
    loudness = Loudness(measured.integrated_lufs, measured.true_peak_dbtp, measured.duration_s)
    tmp = temp_sibling(cached, owner)
    tmp.write_text(json.dumps(loudness.__dict__), encoding="utf-8")
    replace_durably(tmp, cached)
    return loudness


def _gain(lufs: float) -> float:
    return round(REFERENCE_LUFS - lufs, 2) if math.isfinite(lufs) else 0.0


def _peak(true_peak_db: float) -> float:
    return round(10 ** (true_peak_db / 20), 6) if math.isfinite(true_peak_db) else 0.0


def album_loudness(tracks: Sequence[Loudness]) -> Loudness:
    """The album as one programme: energy mean weighted by length, the loudest peak."""
    audible = [t for t in tracks if math.isfinite(t.lufs) and t.duration_s > 0]
    total = sum(t.duration_s for t in audible)
    if not audible or total <= 0:
        return Loudness(-math.inf, max((t.true_peak_db for t in tracks), default=-math.inf), 0)
    energy = sum(t.duration_s * 10 ** (t.lufs / 10) for t in audible) / total
    peak = max(t.true_peak_db for t in tracks)
    return Loudness(10 * math.log10(energy), peak, sum(t.duration_s for t in tracks))


def replaygain(track: Loudness, album: Loudness | None) -> ReplayGain:
    return ReplayGain(
        track_gain_db=_gain(track.lufs),
        track_peak=_peak(track.true_peak_db),
        album_gain_db=None if album is None else _gain(album.lufs),
        album_peak=None if album is None else _peak(album.true_peak_db),
    )


def r128_gain(gain_db: float) -> str:
    """An Opus R128 gain tag: Q7.8 fixed point (1/256 dB), relative to -23 LUFS."""
    relative = gain_db + (OPUS_REFERENCE_LUFS - REFERENCE_LUFS)
    return str(max(-32768, min(32767, round(relative * 256))))
