"""`songbatch check`: what a finished file measures (loudness, peaks, noise floor, room tone,
encoding, tags) and whether it keeps a mastering preset's rules.

One ffmpeg pass per file, streamed, so memory stays flat however long the book is:

- `ebur128=peak=true` gives the integrated loudness (LUFS) and the true peak (dBTP) in its
  summary; `framelog=verbose` keeps its ten lines a second out of the info-level log.
- `asetnsamples` cuts the audio into 0.5 s windows and `astats=metadata=1:reset=1` measures
  each window's RMS alone, printed by `ametadata=print` as the window passes. The quietest
  full window is the noise floor (ACX's meaning: the room tone between words); the overall RMS
  is the windows' mean squares weighted by their lengths, so it is the whole file's RMS exactly
  without a second meter.
- `silencedetect` at `SILENCE_DB` finds the room tone at the head and the tail.

ffmpeg logs all of these on stderr at the info level, which `ffmpeg.run_ffmpeg` (quiet, for
encodes) does not keep; the pass here reads stderr a line at a time through
`ffmpeg.ffmpeg_lines` (the runner `run_ffmpeg` is made of) and keeps only the numbers.
Sample rate, channels, bitrate and CBR come from the container through mutagen, tags and
chapters from `tagging`'s readers. Library code: never prints.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Literal

import mutagen
from mutagen.mp3 import MP3
from mutagen.mp3 import BitrateMode as Mp3BitrateMode  # what a file says; ours is what we ask
from mutagen.mp4 import MP4

from songbatch.errors import InputError
from songbatch.ffmpeg import FfmpegFailed, ffmpeg_lines
from songbatch.presets import BitrateMode, Preset
from songbatch.workspace import Workspace, resolve_workspace

AUDIO_EXTENSIONS = (".mp3", ".m4b", ".m4a", ".flac", ".opus", ".ogg", ".wav")
MANIFEST_EXTENSIONS = (".yaml", ".yml")
# Below this (every sample of a stretch: silencedetect's test is per sample, not RMS) is room
# tone, not a word. Not -50 dB: noise at ACX's -60 dB RMS limit peaks over -50 dB dozens of
# times a second, and each peak would end the "silence"; -40 dB is 20 dB over the loudest room
# tone ACX takes (10 sigma for Gaussian noise) and far under speech.
SILENCE_DB = -40.0
SILENCE_MIN_S = 0.1  # shorter quiet stretches are not counted as head or tail silence
WINDOW_S = 0.5  # the noise floor's window
_EDGE_S = 0.01  # a silence starting this close to 0 (or ending this close to the end) is at it


class Rule(str, Enum):  # str, Enum: StrEnum is 3.11+
    LEVEL = "level"
    TRUE_PEAK = "true_peak"
    NOISE_FLOOR = "noise_floor"
    HEAD_SILENCE = "head_silence"
    TAIL_SILENCE = "tail_silence"
    SAMPLE_RATE = "sample_rate"
    CHANNELS = "channels"
    BITRATE = "bitrate"
    CBR = "cbr"


@dataclass(frozen=True)
class Measurement:
    """What one file measures. Levels in dB; -inf is digital silence."""

    path: Path
    fmt: str  # the file's extension without the dot: which preset encoding applies
    codec: str | None
    sample_rate: int
    channels: int
    bitrate_kbps: float | None
    cbr: bool | None  # MP3 only (its Xing/Info header); None: not known for this format
    duration_s: float
    integrated_lufs: float
    true_peak_dbtp: float
    rms_db: float
    noise_floor_db: float  # RMS of the quietest full 0.5 s window
    head_silence_s: float
    tail_silence_s: float
    tags: dict[str, str | None] = field(default_factory=dict)  # title, artist, album
    chapters: list[tuple[str, int]] | None = None  # (title, start ms); None: no chapter list

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        if self.chapters is not None:
            data["chapters"] = [{"title": t, "start_ms": ms} for t, ms in self.chapters]
        return {key: _finite(value) for key, value in data.items()}


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    passed: bool
    value: float | int | bool | None  # what was measured, as the rule reads it
    limit: str  # the rule, in words: "-23.0..-18.0 dB RMS"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "passed": self.passed,
            "value": _finite(self.value),
            "limit": self.limit,
        }


@dataclass(frozen=True)
class FileCheck:
    measurement: Measurement
    results: list[RuleResult]

    @property
    def passed(self) -> bool:
        return all(result.passed for result in self.results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.measurement.path),
            "passed": self.passed,
            "measurement": self.measurement.as_dict(),
            "rules": [result.as_dict() for result in self.results],
        }


def _finite(value: Any) -> Any:
    """JSON has no infinity: -inf dB (digital silence) is written as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# --- Measuring -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Container:
    sample_rate: int
    channels: int
    bitrate_kbps: float | None
    cbr: bool | None
    chapters: list[tuple[str, int]] | None


def measure(path: Path) -> Measurement:
    """Measure one audio file; InputError (naming it) when it cannot be read or decoded,
    EngineError when there is no ffmpeg."""
    path = Path(path)
    container = _container(path)
    window = max(1, round(container.sample_rate * WINDOW_S))
    graph = ",".join(
        (
            "ebur128=peak=true:framelog=verbose",
            f"asetnsamples=n={window}:p=0",
            "astats=metadata=1:reset=1:measure_perchannel=none"
            ":measure_overall=RMS_level+Number_of_samples",
            "ametadata=mode=print",
            f"silencedetect=n={SILENCE_DB}dB:d={SILENCE_MIN_S}",
        )
    )
    args = ["-i", str(path), "-map", "0:a:0", "-af", graph, "-f", "null", "-"]
    parsed = _Parsed()
    for line in _ffmpeg_lines(path, args):
        parsed.feed(line)
    if not parsed.windows:
        raise InputError(f"{path}: no audio in it")
    duration = sum(count for _, count in parsed.windows) / container.sample_rate
    if parsed.integrated is None or parsed.true_peak is None:
        raise InputError(f"{path}: ffmpeg gave no loudness summary for it")
    head, tail = _edges(parsed.silences, duration)
    return Measurement(
        path=path,
        fmt=path.suffix.lower().lstrip("."),
        codec=parsed.codec,
        sample_rate=container.sample_rate,
        channels=container.channels,
        bitrate_kbps=container.bitrate_kbps,
        cbr=container.cbr,
        duration_s=round(duration, 3),
        integrated_lufs=parsed.integrated,
        true_peak_dbtp=parsed.true_peak,
        rms_db=round(_overall_rms(parsed.windows), 2),
        noise_floor_db=round(_noise_floor(parsed.windows), 2),
        head_silence_s=round(head, 3),
        tail_silence_s=round(tail, 3),
        tags=_tags(path),
        chapters=container.chapters,
    )


def level(
    path: Path, how: Literal["rms", "lufs"], *, cancel: threading.Event | None = None
) -> float:
    """One figure in one light pass: the whole file's unweighted RMS (astats) or its integrated
    loudness (ebur128 without true peak, which oversamples 4x and costs most of `measure`)."""
    path = Path(path)
    args = ["-i", str(path), "-map", "0:a:0", "-af", LEVEL_METERS[how].filter, "-f", "null", "-"]
    return run_meter(path, args, LEVEL_METERS[how], cancel=cancel)


@dataclass(frozen=True)
class Meter:
    """An ffmpeg filter that reports a level and passes audio through, so it can end any
    graph (mastering measures what it writes in the pass that writes it), and how to read
    the figure from ffmpeg's log."""

    filter: str
    reading: re.Pattern[str]


def run_meter(
    source: Path | str,
    args: Sequence[str],
    meter: Meter,
    *,
    cancel: threading.Event | None = None,
    feed: Iterable[bytes | memoryview] | None = None,
) -> float:
    """Run ffmpeg with `args`, whose graph holds `meter`; the level it reports. `feed`: what
    ffmpeg reads on stdin. `source` names what is measured in an error."""
    lines = _ffmpeg_lines(source, args, cancel=cancel, feed=feed)
    found = [float(match[1]) for line in lines if (match := meter.reading.search(line))]
    if not found:
        raise InputError(f"{source}: ffmpeg gave no level for it")
    return found[-1]


def _container(path: Path) -> _Container:
    try:
        audio = mutagen.File(path)
    except (OSError, mutagen.MutagenError) as exc:
        raise InputError(f"{path}: cannot read it: {exc}") from None
    info = getattr(audio, "info", None)
    sample_rate = getattr(info, "sample_rate", None)
    if audio is None or not sample_rate:
        raise InputError(f"{path}: not an audio file songbatch can read")
    bitrate = getattr(info, "bitrate", None)
    cbr = None
    if isinstance(audio, MP3):
        mode = info.bitrate_mode  # type: ignore[union-attr]
        # LAME writes an "Info" header on CBR files and "Xing" on VBR ones; a file with
        # neither (UNKNOWN) is CBR by the MP3 convention only if every frame says so, which
        # mutagen does not read: not counted as CBR.
        cbr = mode is Mp3BitrateMode.CBR
    chapters = None
    if isinstance(audio, (MP4, MP3)):
        from songbatch.tagging import read_chapters

        # An MP3 with none (a chapter file) reports none, as a format without chapters does.
        chapters = read_chapters(path) or (None if isinstance(audio, MP3) else [])
    return _Container(
        sample_rate=int(sample_rate),
        channels=int(getattr(info, "channels", 0) or 0),
        bitrate_kbps=round(bitrate / 1000, 1) if bitrate else None,
        cbr=cbr,
        chapters=chapters,
    )


def _tags(path: Path) -> dict[str, str | None]:
    from songbatch.tagging import read_tags

    try:
        tags = read_tags(path)
    except (InputError, mutagen.MutagenError, ValueError, KeyError):
        return {"title": None, "artist": None, "album": None}
    return {"title": tags.title or None, "artist": tags.artist, "album": tags.album}


def _ffmpeg_lines(
    source: Path | str,
    args: Sequence[str],
    *,
    cancel: threading.Event | None = None,
    feed: Iterable[bytes | memoryview] | None = None,
) -> Iterator[str]:
    """ffmpeg's stderr a line at a time, at the info level (where the meters print);
    InputError naming `source` with its last lines when it fails."""
    try:
        yield from ffmpeg_lines(args, level="info", cancel=cancel, doing="measuring", feed=feed)
    except FfmpegFailed as exc:
        raise InputError(f"{source}: ffmpeg cannot decode it: {exc.tail}") from None


_NUMBER = r"(-?inf|[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?)"
_RMS = re.compile(r"lavfi\.astats\.Overall\.RMS_level=" + _NUMBER)
_COUNT = re.compile(r"lavfi\.astats\.Overall\.Number_of_samples=" + _NUMBER)
_INTEGRATED = re.compile(r"^\s+I:\s+" + _NUMBER + r" LUFS")
_RMS_SUMMARY = re.compile(r"\] RMS level dB: " + _NUMBER)
# The meters `check` reads a file's level with.
LEVEL_METERS = {
    "rms": Meter("astats=measure_perchannel=none:measure_overall=RMS_level", _RMS_SUMMARY),
    "lufs": Meter("ebur128=framelog=verbose", _INTEGRATED),
}
# The RMS of a whole stream to 0.1 dB, for a decision rather than a report: volumedetect costs
# almost nothing where astats, at 44.1 kHz, costs as much as a mastering pass's limiter.
QUICK_RMS = Meter("volumedetect", re.compile(r"mean_volume: " + _NUMBER + r" dB"))
_PEAK = re.compile(r"^\s+Peak:\s+" + _NUMBER + r" dBFS")
_SILENCE_START = re.compile(r"silence_start: " + _NUMBER)
_SILENCE_END = re.compile(r"silence_end: " + _NUMBER)
_CODEC = re.compile(r"Stream #\d+:\d+.*?: Audio: (\w+)")


class _Parsed:
    """The numbers in ffmpeg's log, fed one line at a time."""

    def __init__(self) -> None:
        self.codec: str | None = None
        self.windows: list[tuple[float, int]] = []  # (RMS dB, samples): 16 bytes per 0.5 s
        self.integrated: float | None = None
        self.true_peak: float | None = None
        self.silences: list[tuple[float, float | None]] = []  # (start, end); end None: open
        self._rms: float | None = None

    def feed(self, line: str) -> None:
        if match := _RMS.search(line):
            self._rms = float(match[1])
        elif match := _COUNT.search(line):
            if self._rms is not None:
                self.windows.append((self._rms, int(float(match[1]))))
                self._rms = None
        elif match := _SILENCE_START.search(line):
            self.silences.append((float(match[1]), None))
        elif match := _SILENCE_END.search(line):
            if self.silences and self.silences[-1][1] is None:
                self.silences[-1] = (self.silences[-1][0], float(match[1]))
        elif match := _INTEGRATED.search(line):
            self.integrated = float(match[1])
        elif match := _PEAK.search(line):
            self.true_peak = float(match[1])
        elif self.codec is None and (match := _CODEC.search(line)):
            self.codec = match[1]


def _overall_rms(windows: list[tuple[float, int]]) -> float:
    total = sum(count for _, count in windows)
    power = sum(_power(rms) * count for rms, count in windows)
    return 10 * math.log10(power / total) if power > 0 and total else -math.inf


def _power(db: float) -> float:
    return 0.0 if db == -math.inf else 10 ** (db / 10)


def _noise_floor(windows: list[tuple[float, int]]) -> float:
    # The last window is shorter than 0.5 s (whatever was left); it counts only when it is the
    # whole file.
    full = windows[:-1] if len(windows) > 1 else windows
    return min(rms for rms, _ in full)


def _edges(silences: list[tuple[float, float | None]], duration: float) -> tuple[float, float]:
    """Seconds of silence at the head and at the tail."""
    head = tail = 0.0
    if silences and silences[0][0] <= _EDGE_S:
        end = silences[0][1]
        head = duration if end is None else min(end, duration)
    if silences:
        start, end = silences[-1]
        if end is None or end >= duration - _EDGE_S:
            tail = max(0.0, duration - start)
    return head, tail


# --- Judging ---------------------------------------------------------------------------------


def judge(measurement: Measurement, preset: Preset | None) -> list[RuleResult]:
    """The preset's rules for this file, each passed or failed; a rule whose preset field is
    None is not checked, and no preset checks nothing."""
    if preset is None:
        return []
    m = measurement
    results: list[RuleResult] = []
    if preset.measure == "rms" and preset.level_range is not None:
        low, high = preset.level_range
        results.append(
            RuleResult(Rule.LEVEL, low <= m.rms_db <= high, m.rms_db, f"{low:g}..{high:g} dB RMS")
        )
    elif preset.measure is not None and preset.target is not None:
        value = m.rms_db if preset.measure == "rms" else m.integrated_lufs
        unit = "dB RMS" if preset.measure == "rms" else "LUFS"
        ok = abs(value - preset.target) <= preset.tolerance
        limit = f"{preset.target:g} ± {preset.tolerance:g} {unit}"
        results.append(RuleResult(Rule.LEVEL, ok, value, limit))
    if preset.true_peak_max is not None:
        ok = m.true_peak_dbtp <= preset.true_peak_max
        limit = f"<= {preset.true_peak_max:g} dBTP"
        results.append(RuleResult(Rule.TRUE_PEAK, ok, m.true_peak_dbtp, limit))
    if preset.noise_floor_max is not None:
        ok = m.noise_floor_db <= preset.noise_floor_max
        limit = f"<= {preset.noise_floor_max:g} dB RMS"
        results.append(RuleResult(Rule.NOISE_FLOOR, ok, m.noise_floor_db, limit))
    for rule, span, value in (
        (Rule.HEAD_SILENCE, preset.head_silence_s, m.head_silence_s),
        (Rule.TAIL_SILENCE, preset.tail_silence_s, m.tail_silence_s),
    ):
        if span is not None:
            low, high = span
            results.append(RuleResult(rule, low <= value <= high, value, f"{low:g}..{high:g} s"))
    results += _encoding_results(m, preset)
    return results


def _encoding_results(m: Measurement, preset: Preset) -> list[RuleResult]:
    encoding = preset.encoding(m.fmt)
    results = []
    if encoding.sample_rate is not None:
        ok = m.sample_rate == encoding.sample_rate
        results.append(
            RuleResult(Rule.SAMPLE_RATE, ok, m.sample_rate, f"{encoding.sample_rate} Hz")
        )
    if encoding.channels is not None:
        ok = m.channels == encoding.channels
        results.append(RuleResult(Rule.CHANNELS, ok, m.channels, f"{encoding.channels}"))
    # A floor only at a constant bit rate (ACX's 192 kbit/s CBR MP3): otherwise the figure is
    # the encoder's target, which an AAC or Opus encoder undershoots on quiet speech.
    constant = encoding.mode is BitrateMode.CBR
    if encoding.bitrate_kbps is not None and constant:
        ok = m.bitrate_kbps is not None and m.bitrate_kbps >= encoding.bitrate_kbps
        limit = f">= {encoding.bitrate_kbps} kbit/s"
        results.append(RuleResult(Rule.BITRATE, ok, m.bitrate_kbps, limit))
    if constant:
        results.append(RuleResult(Rule.CBR, m.cbr is True, m.cbr, "constant bit rate"))
    return results


# --- What to check ---------------------------------------------------------------------------


def check_paths(paths: Sequence[Path], workspace: Workspace | Path | None = None) -> list[Path]:
    """The audio files that paths name: files as they are, folders' audio files (sorted, not
    under dot-folders such as .songbatch/), and a manifest's planned outputs as the workspace's
    ledger records them (read-only). InputError naming the first path that is missing, not
    audio, or a manifest's output not yet rendered."""
    found: list[Path] = []
    seen: set[Path] = set()
    for path in paths:
        for item in _expand(Path(path), workspace):
            key = item.resolve()
            if key not in seen:
                seen.add(key)
                found.append(item)
    return found


def _expand(path: Path, workspace: Workspace | Path | None) -> list[Path]:
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        files = sorted(
            item
            for item in path.rglob("*")
            if item.suffix.lower() in AUDIO_EXTENSIONS
            and item.is_file()
            and not any(part.startswith(".") for part in item.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"{path}: no audio files in it ({', '.join(AUDIO_EXTENSIONS)})")
        return files
    suffix = path.suffix.lower()
    if suffix in MANIFEST_EXTENSIONS:
        return manifest_outputs(path, workspace)
    if suffix in AUDIO_EXTENSIONS:
        return [path]
    raise InputError(
        f"{path}: not an audio file ({', '.join(AUDIO_EXTENSIONS)}) or a manifest (.yaml)"
    )


def manifest_outputs(path: Path, workspace: Workspace | Path | None = None) -> list[Path]:
    """A manifest's output files, where its last plan in the workspace put them: the ledger
    (opened read-only) holds the plan's assembly spec, which names the folder and the files."""
    from songbatch.ledger import Ledger, damaged_ledger_guard
    from songbatch.outputs import audio_outputs

    ws = workspace if isinstance(workspace, Workspace) else resolve_workspace(workspace)
    never = InputError(
        f"{path}: never planned in the workspace {ws.root}: `songbatch render {path}` renders"
        " it (is --workspace right?)"
    )
    if not ws.ledger_path.exists():
        raise never
    with Ledger.for_reading(ws.ledger_path) as ledger, damaged_ledger_guard(ledger.path):
        infos = ledger.manifests([str(path.resolve())])
    if not infos:
        raise never
    files = [file.path for file in audio_outputs(infos[0].assembly)]
    for file in files:
        if not file.exists():
            raise InputError(f"{file}: not rendered yet (an output of {path})")
    return files


def check_files(files: Sequence[Path], preset: Preset | None) -> list[FileCheck]:
    """Measure and judge each file, in order."""
    return [FileCheck(m, judge(m, preset)) for m in (measure(file) for file in files)]
