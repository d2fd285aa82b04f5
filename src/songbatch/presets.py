"""Mastering presets: the level a book is brought to, the encoding it is published in, and the
rules `songbatch check` holds its files to. Plain data, shared by the assembly (which masters
to a preset) and the checker (which measures against it), so the two cannot disagree.

Sources: ACX's audio submission requirements (RMS -23 to -18 dB, peaks at most -3 dB, noise
floor at most -60 dB RMS, 44.1 kHz, 192 kbit/s or more constant-bit-rate MP3, 0.5-1 s of room
tone at the head and 1-5 s at the tail of each file, one chapter per file); the podcast level
most platforms normalise to (-16 LUFS integrated, -1 dBTP: Apple's and the AES TD1004
recommendation for streaming); `spoken` sits between them at -19 LUFS, where spoken-word
streaming services normalise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator

if TYPE_CHECKING:  # assemblyspec stores Encodings: it imports this module
    from songbatch.assemblyspec import AssemblySpec


class PresetName(str, Enum):  # str, Enum: StrEnum is 3.11+
    NONE = "none"
    ACX = "acx"
    PODCAST = "podcast"
    SPOKEN = "spoken"


class BitrateMode(str, Enum):  # str, Enum: StrEnum is 3.11+
    """How a lossy encoder spends its bits around `bitrate_kbps`, as a manifest's `mode:`
    spells it. None (no mode) is the format's own way: MP3 constant (libmp3lame's -b:a), Opus
    variable (libopus's default), AAC its encoder's average."""

    CBR = "cbr"  # constant: opus with -vbr off; mp3 as its default
    VBR = "vbr"  # mp3: LAME's quality level nearest the bit rate; opus as its default


@dataclass(frozen=True)
class Encoding:
    """How a format is encoded: under a preset, None keeps the format's own default; as a
    manifest's `encoding:` settings for a format (the assembly spec's `encoding`), None keeps
    the preset's. At a constant bit rate (`mode` CBR), `bitrate_kbps` is also a floor
    `songbatch check` holds files to; otherwise it is the encoder's target only."""

    sample_rate: int | None = None
    channels: int | None = None
    bitrate_kbps: int | None = None
    mode: BitrateMode | None = None

    def with_settings(self, settings: Encoding) -> Encoding:
        """These defaults under a manifest's `encoding:` settings for the format: each field
        the settings set replaces this one's."""
        chosen = ((f.name, getattr(settings, f.name)) for f in dataclasses.fields(settings))
        return dataclasses.replace(self, **{name: v for name, v in chosen if v is not None})

    def key_fields(self) -> dict[str, Any]:
        """What of the encoding goes into a stream's or an output's key, laid out as it was
        when the mode was two flags: the files made then keep their keys (none is encoded
        again for a change of model)."""
        return {
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "bitrate_kbps": self.bitrate_kbps,
            "cbr": self.mode is BitrateMode.CBR,
            "vbr": self.mode is BitrateMode.VBR,
        }


@dataclass(frozen=True)
class Preset:
    name: PresetName
    # What the level is measured as: "rms" (ACX's meter: unweighted RMS of the whole file,
    # dBFS) or "lufs" (integrated loudness, ITU-R BS.1770 / EBU R128).
    measure: Literal["rms", "lufs"] | None = None
    target: float | None = None  # dB RMS or LUFS
    tolerance: float = 0.5  # how far from the target a file may be and pass
    # How close mastering must come before it stops correcting (each correction is a pass).
    mastering_slack_db: float = 0.2
    level_range: tuple[float, float] | None = None  # where a file must be to pass (ACX's RMS)
    true_peak_max: float | None = None  # dBTP; the limiter's ceiling sits below it
    noise_floor_max: float | None = None  # dB RMS of the quietest 0.5 s
    head_silence_s: tuple[float, float] | None = None  # room tone before the first word
    tail_silence_s: tuple[float, float] | None = None  # room tone after the last word
    encodings: dict[str, Encoding] | None = None  # per format
    # What mastering writes: its sample rate and channels (None keeps the master's), and
    # whether silences carry room tone (a quiet room, not digital zero).
    sample_rate: int | None = None
    channels: int | None = None
    room_tone: bool = False
    # The formats a render checks against these rules once a book is written (None: all):
    # ACX takes MP3s; its .m4b is for other stores, whose AAC may overshoot ACX's peak.
    checked_formats: frozenset[str] | None = None

    @property
    def masters(self) -> bool:
        return self.name is not PresetName.NONE

    @property
    def limiter_ceiling_db(self) -> float | None:
        """Where the true-peak limiter holds peaks: half a dB of headroom under the rule, as a
        lossy encode's overshoot is about that."""
        return None if self.true_peak_max is None else self.true_peak_max - 0.5

    def encoding(self, fmt: str) -> Encoding:
        # The whole book's MP3 (`mp3-book`) is encoded as the chapter MP3s are.
        fmt = "mp3" if fmt == "mp3-book" else fmt
        return (self.encodings or {}).get(fmt, Encoding())


_ACX_ENCODING = Encoding(sample_rate=44_100, channels=1, bitrate_kbps=192, mode=BitrateMode.CBR)
# Streaming: rates the platforms re-encode from without a second generation of artefacts. A
# lossy encode also takes a few tenths of a LU off a voice's level (its low-pass drops what
# it cannot hear); at 64 kbit/s, the formats' own default, about 0.7 LU.
_STREAMING_ENCODINGS = {
    "mp3": Encoding(bitrate_kbps=128),
    "m4b": Encoding(bitrate_kbps=96),
    "opus": Encoding(bitrate_kbps=64),
}

PRESETS: dict[PresetName, Preset] = {
    PresetName.NONE: Preset(PresetName.NONE),
    PresetName.ACX: Preset(
        PresetName.ACX,
        measure="rms",
        target=-20.0,  # the middle of ACX's -23..-18 dB window
        tolerance=1.0,
        mastering_slack_db=0.5,  # a 5 dB window: half a dB off its middle is a pass
        level_range=(-23.0, -18.0),
        true_peak_max=-3.0,
        noise_floor_max=-60.0,
        head_silence_s=(0.5, 1.0),
        tail_silence_s=(1.0, 5.0),
        sample_rate=44_100,
        channels=1,
        room_tone=True,
        checked_formats=frozenset({"mp3"}),
        encodings={
            "mp3": _ACX_ENCODING,
            "m4b": Encoding(sample_rate=44_100, channels=1, bitrate_kbps=128),
            "flac": Encoding(sample_rate=44_100, channels=1),
            "wav": Encoding(sample_rate=44_100, channels=1),
        },
    ),
    PresetName.PODCAST: Preset(
        PresetName.PODCAST,
        measure="lufs",
        target=-16.0,
        tolerance=1.0,  # the +-1 LU that AES TD1004 and the platforms allow
        true_peak_max=-1.0,
        encodings=_STREAMING_ENCODINGS,
    ),
    PresetName.SPOKEN: Preset(
        PresetName.SPOKEN,
        measure="lufs",
        target=-19.0,
        tolerance=1.0,
        true_peak_max=-1.0,
        encodings=_STREAMING_ENCODINGS,
    ),
}


def preset(name: str | PresetName) -> Preset:
    """The preset of that name; ValueError naming the known ones otherwise."""
    try:
        key = name if isinstance(name, PresetName) else PresetName(str(name).lower())
        return PRESETS[key]
    except ValueError:
        known = ", ".join(p.value for p in PresetName)
        raise ValueError(f"unknown mastering preset {name!r}; known: {known}") from None


def _preset_name(value: str) -> str:
    return preset(value).name.value  # ValueError names the known presets


# A manifest's or a profile's `master:` field.
PresetField = Annotated[str, AfterValidator(_preset_name)]


def spec_encoding(spec: AssemblySpec, fmt: str) -> Encoding:
    """A format's encoding in an assembly spec: its preset's defaults under the manifest's
    `encoding:` settings for the format (what the assembly encodes, and the planner sizes parts
    by)."""
    defaults = preset(spec.master).encoding(fmt)
    return defaults.with_settings(spec.encoding.get(fmt, Encoding()))
