"""A small album with one layered track (a music bed under a spoken poem), rendered with the
offline profile (espeak-ng and the sketch engine, real ffmpeg), and what the layer tests read
back: the ledger's jobs of the track, its chunk files, its master and its .lrc."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

from songbatch.audio import resample_linear
from songbatch.ledger import Ledger
from songbatch.workspace import Workspace

ALBUM_DIR = "night-harbour"
TRACK = "01 - Lantern Voice"
BED_PROMPT = "calm ambient pads with a soft beat, slow"
POEM = (
    "Light on the water.",
    "Light on the stone.",
    "",
    "Someone is keeping the lantern alone.",
)
# The voice starts START_S in, pauses SENTENCE_S after a line and PARAGRAPH_S at the blank
# line (long enough for the bed to come back up between the stanzas), TAIL_S after the end.
START_S, SENTENCE_S, PARAGRAPH_S, TAIL_S = 2.0, 0.4, 3.5, 3.0
BED_GAIN_DB = -3.0
RATE = 32000  # the offline sketch's rate: the master's


def layered_album(
    folder: Path,
    *,
    poem: tuple[str, ...] = POEM,
    prompt: str = BED_PROMPT,
    album: str = "lyrics_files: [lrc]\n",
    track: str = "",
    bed: str = "",
    voice: str = "",
) -> Path:
    """`folder`/night-harbour.yaml: one layered track. `album`, `track`, `bed` and `voice`
    are extra YAML lines for the album, the track, the bed layer and the spoken layer."""
    text = "".join(f"          {line}\n" if line else "\n" for line in poem)
    manifest = folder / "night-harbour.yaml"
    manifest.write_text(
        "kind: album\n"
        "title: Night Harbour\n"
        "artist: The Example Ensemble\n"
        "formats: [flac]\n"
        "seed: 3\n"
        f"{album}"
        "tracks:\n"
        "  - title: Lantern Voice\n"
        + "".join(f"    {line}\n" for line in track.splitlines())
        + "    layers:\n"
        f"      - prompt: {prompt}\n"
        f"        gain_db: {BED_GAIN_DB}\n"
        + "".join(f"        {line}\n" for line in bed.splitlines())
        + "      - text: |\n"
        f"{text}"
        f"        start: {START_S}\n"
        f"        tail: {TAIL_S}\n"
        f"        pauses: {{sentence: {SENTENCE_S}, paragraph: {PARAGRAPH_S}}}\n"
        + "".join(f"        {line}\n" for line in voice.splitlines()),
        encoding="utf-8",
    )
    return manifest


@dataclass(frozen=True)
class TrackJob:
    key: str
    kind: str
    text: str
    chunk: Path


def track_jobs(workspace: Path, manifest: Path) -> list[TrackJob]:
    """The layered track's jobs in seq order, as the ledger has them."""
    ws = Workspace(workspace)
    with Ledger.for_reading(ws.ledger_path) as ledger:
        [info] = [i for i in ledger.manifests() if i.path == str(manifest.resolve())]
        unit_jobs = ledger.unit_jobs(info.id, 0)
        requests = ledger.job_requests([job.key for job in unit_jobs])
        jobs = []
        for job in unit_jobs:
            request = requests[job.key]
            assert job.out_path is not None
            jobs.append(TrackJob(job.key, request.kind, request.text, ledger.resolve(job.out_path)))
    return jobs


def read(path: Path) -> npt.NDArray[np.float64]:
    audio, rate = soundfile.read(str(path), dtype="float64", always_2d=True)
    assert rate == RATE, path
    return audio


def track_audio(workspace: Path) -> npt.NDArray[np.float64]:
    return read(workspace / "outputs" / ALBUM_DIR / f"{TRACK}.flac")


def bed_gain(
    mix: npt.NDArray[np.float64], bed: npt.NDArray[np.float64], first: int, end: int
) -> float:
    """The bed's gain in the mix over frames [first, end): the mix projected on the bed alone
    (least squares). The voice, uncorrelated with the bed, barely moves it."""
    m, b = mix[first:end], bed[first:end]
    return float((m * b).sum() / (b * b).sum())


def chunk_at_rate(chunk: Path) -> npt.NDArray[np.float64]:
    """A speech chunk's audio (mono) at the mix's rate."""
    voice, rate = soundfile.read(str(chunk), dtype="float32", always_2d=True)
    return resample_linear(voice, rate, RATE)[:, 0].astype(np.float64)


def without_voice(
    mix: npt.NDArray[np.float64], chunks: list[tuple[Path, float]]
) -> npt.NDArray[np.float64]:
    """The mix less each speech chunk at the start found for it: what the bed contributes."""
    rest = mix.copy()
    for chunk, start_s in chunks:
        voice = chunk_at_rate(chunk)
        first = round(start_s * RATE)
        rest[first : first + voice.shape[0]] -= voice[:, None]
    return rest


def voice_onset(
    mix: npt.NDArray[np.float64], chunk: Path, near_s: float, search_s: float = 1.0
) -> float:
    """Where in the mix the speech chunk's audio starts (seconds), found by cross-correlating
    the chunk (at the mix's rate) with the mix within `search_s` of `near_s`."""
    voice = chunk_at_rate(chunk)
    mono = mix.mean(axis=1)
    low = max(0, round((near_s - search_s) * RATE))
    high = min(mono.shape[0], round((near_s + search_s) * RATE) + voice.shape[0])
    window = mono[low:high]
    size = 1 << int(np.ceil(np.log2(window.shape[0] + voice.shape[0])))
    spectrum = np.fft.rfft(window, size) * np.conj(np.fft.rfft(voice, size))
    correlation = np.fft.irfft(spectrum, size)[: window.shape[0] - voice.shape[0] + 1]
    return (low + int(np.argmax(correlation))) / RATE


_LRC_LINE = re.compile(r"\[(\d\d+):(\d\d)\.(\d\d)\](.*)")


def parse_lrc(path: Path) -> list[tuple[float, str]]:
    """(seconds, text) of each line of a simple LRC file; every line must be one."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _LRC_LINE.fullmatch(line)
        assert match is not None, f"not an LRC line: {line!r}"
        minutes, seconds, hundredths, text = match.groups()
        lines.append((int(minutes) * 60 + int(seconds) + int(hundredths) / 100, text))
    return lines
