"""Manifests: strict YAML -> validated, fully resolved audiobooks and albums.

Loading happens in two passes. Pydantic validates the YAML as written (`_Raw*` models: types,
unknown fields, ranges). Then `_Builder` resolves what needs the file system or the whole document
(text files, covers, voice clips, merged voice/pauses/params, output file names) into the public
models, whose fields are the *effective* values later stages use without looking back at YAML.
Every failure is one ManifestError pointing at the manifest's line and column.
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import soundfile
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from songbatch import text as textlib
from songbatch.assemblyspec import Publishing
from songbatch.engines.params import MAX_MUSIC_S, MIN_MUSIC_S
from songbatch.errors import ManifestError
from songbatch.normalise.ipa import IpaError, to_espeak
from songbatch.normalise.lexicon import LexiconEntry, check_pattern
from songbatch.presets import BitrateMode, Encoding, PresetField
from songbatch.yamlstrict import (
    FieldPath,
    StrictDocument,
    TextEncodingError,
    decode_utf8,
    format_path,
    parse_yaml,
    special_file_problem,
    validation_error,
)

Format = Literal["m4b", "mp3-book", "mp3", "flac", "opus", "wav"]
SubtitleFormat = Literal["srt", "vtt"]
KINDS = ("audiobook", "album")


def _book_formats() -> list[Format]:
    return ["m4b", "mp3"]


def _album_formats() -> list[Format]:
    return ["mp3"]


# --- value parsers --------------------------------------------------------------------------

_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?\s*(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?\s*"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?\s*(?:(?P<ms>\d+(?:\.\d+)?)ms)?"
)
_LANGUAGE = re.compile(
    r"[A-Za-z]{2,3}(-[A-Za-z]{4})?(-(?:[A-Za-z]{2}|[0-9]{3}))?(-[A-Za-z0-9]{5,8})*"
)


def parse_seconds(value: Any) -> float:
    """Seconds from a number (210, 0.4) or a string ("210", "3m30s", "90s", "2m", "400ms", "1h")."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expected seconds as a number or a string like '1m30s', got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.fullmatch(text)
    if not text or match is None or not any(match.groupdict().values()):
        raise ValueError(
            f"cannot read {value!r} as a duration; write seconds (90) or e.g. '1m30s', '400ms'"
        )
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return (
        parts.get("h", 0.0) * 3600
        + parts.get("m", 0.0) * 60
        + parts.get("s", 0.0)
        + parts.get("ms", 0.0) / 1000
    )


def _pause_seconds(value: Any) -> float:
    seconds = parse_seconds(value)
    if not 0.0 <= seconds <= 60.0:  # also rejects NaN
        raise ValueError(f"a pause must be between 0 and 60 seconds, got {seconds:g}")
    return seconds


def _track_seconds(value: Any) -> float:
    seconds = parse_seconds(value)
    if not 0.0 < seconds <= MAX_MUSIC_S:
        raise ValueError(
            f"duration must be more than 0 and at most {MAX_MUSIC_S:g} seconds, got {seconds:g}"
        )
    if seconds < MIN_MUSIC_S:
        raise ValueError(
            f"duration must be at least {MIN_MUSIC_S:g} seconds to render, got {seconds:g}"
        )
    return seconds


MAX_FADE_S = 30.0
_FADE_WORDS = {"fade_in": "fade-in", "fade_out": "fade-out"}


def _fade_seconds(value: Any) -> float:
    seconds = parse_seconds(value)
    if not 0.0 <= seconds <= MAX_FADE_S:  # also rejects NaN
        raise ValueError(f"a fade must be between 0 and {MAX_FADE_S:g} seconds, got {seconds:g}")
    return seconds


def _not_blank(value: str) -> str:
    stripped = value.strip()
    if not stripped:
        raise ValueError("must not be empty")
    if not textlib.has_visible_text(stripped):
        raise ValueError("must not be empty (it has only invisible characters)")
    return stripped


def _year(value: int) -> int:
    if not 1000 <= value <= 2999:
        raise ValueError(f"year must be between 1000 and 2999, got {value}")
    return value


def _language(value: str) -> str:
    if not _LANGUAGE.fullmatch(value):
        raise ValueError(f"{value!r} is not a language tag like 'en', 'en-GB' or 'pt-BR'")
    return value


PauseSeconds = Annotated[float, BeforeValidator(_pause_seconds)]
TrackSeconds = Annotated[float, BeforeValidator(_track_seconds)]
FadeSeconds = Annotated[float, BeforeValidator(_fade_seconds)]
Title = Annotated[str, AfterValidator(_not_blank)]
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]  # numpy/torch generators take 32-bit seeds
Year = Annotated[int, AfterValidator(_year)]
# Scheduling only (never part of a job key); bounded so that adding waited runs stays an int.
Priority = Annotated[int, Field(ge=-1000, le=1000)]

Language = Annotated[str, AfterValidator(_language)]


SAMPLE_RATES = (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)


def _sample_rate(value: int) -> int:
    if value not in SAMPLE_RATES:
        known = ", ".join(str(rate) for rate in SAMPLE_RATES)
        raise ValueError(f"sample_rate must be one of {known}, got {value}")
    return value


SampleRate = Annotated[int, AfterValidator(_sample_rate)]
_LOSSLESS = ("flac", "wav")
_OPUS_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)


def _encoding_problem(fmt: str, settings: Encoding) -> tuple[str, str] | None:
    """(field, why) when a format cannot be encoded so; None when it can."""
    fmt = "mp3" if fmt == "mp3-book" else fmt  # the whole book's MP3 is an MP3 to the encoder
    bitrate, sample_rate = settings.bitrate_kbps, settings.sample_rate
    if fmt in _LOSSLESS and bitrate is not None:
        return "bitrate", f"{fmt} is lossless: it has no bit rate to set"
    if settings.mode is not None and fmt not in ("mp3", "opus"):
        return "mode", f"cbr/vbr is for mp3 and opus, not {fmt}"
    if fmt == "opus" and sample_rate is not None and sample_rate not in _OPUS_RATES:
        rates = ", ".join(str(rate) for rate in _OPUS_RATES)
        return "sample_rate", f"opus takes {rates} Hz"
    if fmt == "mp3" and bitrate is not None and bitrate > 320:
        return "bitrate", "mp3 goes up to 320 kbit/s"
    return None


def _series_part(value: str | int | float) -> str:
    """A number in the series: 1, 2.5 or "1-2" (an omnibus); kept as text, as tags hold it."""
    text = f"{value:g}" if isinstance(value, (int, float)) else value.strip()
    if not re.fullmatch(r"\d+(\.\d+)?(-\d+(\.\d+)?)?", text):
        raise ValueError(f"series_part must be a number like 1, 2.5 or 1-3, got {value!r}")
    return text


def _isbn(value: str | int) -> str:
    """ISBN-10 or ISBN-13, hyphens and spaces allowed; its check digit must hold. Unquoted
    digits arrive as a YAML number, which loses an ISBN-10's leading zero: say to quote it."""
    digits = re.sub(r"[\s-]", "", str(value)).upper()
    if isinstance(value, int) and len(digits) not in (10, 13):
        raise ValueError(f"isbn must be 10 or 13 digits, got {value}: write it in quotes")
    if re.fullmatch(r"\d{9}[\dX]", digits):
        total = sum((10 - i) * (10 if c == "X" else int(c)) for i, c in enumerate(digits))
        valid = total % 11 == 0
    elif re.fullmatch(r"\d{13}", digits):
        valid = sum((3 if i % 2 else 1) * int(c) for i, c in enumerate(digits)) % 10 == 0
    else:
        raise ValueError(f"isbn must be 10 or 13 digits (hyphens allowed), got {value!r}")
    if not valid:
        raise ValueError(f"isbn {value!r} fails its check digit: a typo?")
    return digits


def _asin(value: str) -> str:
    if not re.fullmatch(r"[A-Z0-9]{10}", value.strip()):
        raise ValueError(f"asin must be 10 capital letters and digits (B0...), got {value!r}")
    return value.strip()


SeriesPart = Annotated[str | int | float, AfterValidator(_series_part)]
Isbn = Annotated[str | int, AfterValidator(_isbn)]
Asin = Annotated[str, AfterValidator(_asin)]


def _subtitle_formats(value: Any) -> Any:
    if isinstance(value, str):
        raise ValueError(
            f"expected a list of subtitle formats such as [srt, vtt], got {value!r};"
            " a book's subtitle text is `subtitle:`"
        )
    return value


SubtitleFormats = Annotated[list[SubtitleFormat], BeforeValidator(_subtitle_formats)]


def _part_hours(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"max_hours must be a number of hours such as 10, got {value!r}")
    hours = float(value)
    if not 0.0 < hours <= 1000.0:  # also rejects NaN and .inf
        raise ValueError(f"max_hours must be more than 0 and at most 1000, got {value!r}")
    return hours


def _part_bytes(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 2e9 is a float in YAML 1.2
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(
            f"max_bytes must be a whole number of bytes such as 2000000000, got {value!r}"
        )
    if not 1_000_000 <= value <= 2**50:
        raise ValueError(f"max_bytes must be from 1000000 (1 MB) to 2**50, got {value!r}")
    return value


PartHours = Annotated[float, BeforeValidator(_part_hours)]
PartBytes = Annotated[int, BeforeValidator(_part_bytes)]


def _credit(value: Any) -> Any:
    """`true` (songbatch writes the credits from the book's tags), `false`, or their text."""
    if isinstance(value, str):
        if not textlib.has_visible_text(value):
            raise ValueError("the credits' text must not be empty (write `false` for none)")
        return value
    if not isinstance(value, bool):
        raise ValueError(
            "expected true (songbatch writes them from the title, author and narrator),"
            f" false, or the credits' text, got {value!r}"
        )
    return value


Credit = Annotated[bool | str, BeforeValidator(_credit)]


def _credits_mapping(value: Any) -> Any:
    if isinstance(value, (bool, str)):
        raise ValueError(
            "expected which credits to add, such as {opening: true, closing: true}"
            f" (got {value!r})"
        )
    return value


MIN_GAIN_DB, MAX_GAIN_DB = -60.0, 12.0
DEFAULT_DUCK_DB = 12.0  # a broadcast voice-over dip: the bed stays audible, the words clear
MAX_DUCK_DB = 40.0
MAX_TAIL_S = 60.0


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _gain_db(value: Any) -> float:
    gain = _number(value, "gain_db")
    if not MIN_GAIN_DB <= gain <= MAX_GAIN_DB:  # also rejects NaN and .inf
        raise ValueError(
            f"gain_db must be from {MIN_GAIN_DB:g} to {MAX_GAIN_DB:g} dB, got {value!r}"
        )
    return gain


def _duck_db(value: Any) -> float:
    """`true` (DEFAULT_DUCK_DB), `false` (0: not ducked) or how many dB the layer dips."""
    if isinstance(value, bool):
        return DEFAULT_DUCK_DB if value else 0.0
    depth = _number(value, "duck (true, false or dB)")
    if not 0.0 <= depth <= MAX_DUCK_DB:
        raise ValueError(f"duck must be from 0 to {MAX_DUCK_DB:g} dB, got {value!r}")
    return depth


def _layer_start(value: Any) -> float:
    seconds = parse_seconds(value)
    if not 0.0 <= seconds <= MAX_MUSIC_S:
        raise ValueError(f"start must be from 0 to {MAX_MUSIC_S:g} seconds, got {seconds:g}")
    return seconds


def _layer_tail(value: Any) -> float:
    seconds = parse_seconds(value)
    if not 0.0 <= seconds <= MAX_TAIL_S:
        raise ValueError(f"tail must be from 0 to {MAX_TAIL_S:g} seconds, got {seconds:g}")
    return seconds


_FOREIGN_LAYER_FIELD = {
    "spoken": {
        "duration": "a spoken layer lasts as long as its words; `duration` is for music layers"
        " (or the track)",
        "params": "a spoken layer's engine parameters go in its `voice: {params: ...}`",
        "duck": "`duck` is for music layers: it says how far a bed dips under the voices",
    },
    "music": {
        "voice": "`voice` is for spoken layers (with `text`)",
        "language": "`language` is for spoken layers (with `text`)",
        "pauses": "`pauses` are for spoken layers (with `text`)",
        "start": "`start` is for spoken layers: a music layer runs from the track's start",
        "tail": "`tail` is for spoken layers: the music after the last word",
    },
}

GainDb = Annotated[float, BeforeValidator(_gain_db)]
DuckDb = Annotated[float, BeforeValidator(_duck_db)]
LayerStart = Annotated[float, BeforeValidator(_layer_start)]
LayerTail = Annotated[float, BeforeValidator(_layer_tail)]
LyricsFormat = Literal["lrc"]


# --- public models (effective values) -------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Pauses(_Model):
    """Silence in seconds after a sentence, a paragraph and a chapter (YAML: 0.4, "400ms")."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sentence: PauseSeconds = 0.35
    paragraph: PauseSeconds = 0.9
    chapter: PauseSeconds = 2.0


class Voice(_Model):
    reference: Path | None = None  # absolute; checked to be decodable audio
    params: dict[str, Any] = Field(default_factory=dict)


class Parts(_Model):
    """Where a book's .m4b is split into parts (at chapter bounds): exactly one limit."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    max_hours: PartHours | None = None
    max_bytes: PartBytes | None = None


class Credits(_Model):
    """ACX's opening and closing credits, each its own file before the first chapter and
    after the last: `true` (written from the book's tags), `false`, or the text to speak."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    opening: Credit = False
    closing: Credit = False


CreditsRole = Literal["opening", "closing"]
OPENING_CREDITS = "Opening Credits"
CLOSING_CREDITS = "Closing Credits"


class Chapter(_Model):
    title: str
    text: str
    text_file: Path | None = None
    voice: Voice
    pauses: Pauses
    seed: int
    file: str  # output file stem, already safe
    line: int  # 1-based manifest line where the chapter starts
    # Where the chapter was written: ("chapters", i), or ("credits", "opening"|"closing") for
    # the credits the builder adds, so later checks point at the right line.
    where: tuple[str | int, ...] = ()
    # Set on the credits chapters: their title is a file's and a chapter mark's name, never
    # spoken (`speak_titles` reads chapter headings, and credits have none).
    credits: CreditsRole | None = None


class Audiobook(_Model):
    kind: Literal["audiobook"] = "audiobook"
    title: str
    author: str
    narrator: str | None = None
    language: str = "en"
    cover: Path | None = None
    description: str | None = None
    year: int | None = None
    publishing: Publishing = Field(default_factory=Publishing)  # subtitle, publisher, ...
    voice: Voice = Field(default_factory=Voice)
    seed: int = 0
    pauses: Pauses = Field(default_factory=Pauses)
    speak_titles: bool = True
    formats: list[Format] = Field(default_factory=_book_formats)
    encoding: dict[str, Encoding] = Field(default_factory=dict)  # per format, what it sets
    master: str | None = None  # a mastering preset (presets.py); None: the profile's
    subtitles: list[SubtitleFormat] = Field(default_factory=list)
    parts: Parts | None = None  # None: one .m4b, however long
    normalise: bool = True  # numbers, dates, abbreviations... said in words (normalise/)
    lexicon: list[LexiconEntry] = Field(default_factory=list)  # the file's, then the book's
    output: Path | None = None
    profile: str | None = None
    priority: int = 0
    chapters: list[Chapter]


class LayerPauses(_Model):
    """Silence in seconds after each sentence or line of a spoken layer, and after each
    blank line (a stanza or paragraph)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    sentence: PauseSeconds = 0.35
    paragraph: PauseSeconds = 0.9


class MusicLayer(_Model):
    """A layer the music engine renders: a bed under the voices."""

    kind: Literal["music"] = "music"
    prompt: str
    duration: float | None = None  # None: fitted to the voices (planner)
    seed: int
    params: dict[str, Any] = Field(default_factory=dict)
    gain_db: float = 0.0
    duck_db: float = DEFAULT_DUCK_DB  # how far it dips while a voice speaks; 0: never


class SpeechLayer(_Model):
    """A layer the speech engine speaks, a chunk per sentence or line, placed `start`
    seconds into the track; the track runs `tail` seconds past its last word."""

    kind: Literal["speech"] = "speech"
    text: str
    text_file: Path | None = None
    voice: Voice
    language: str = "en"
    seed: int
    pauses: LayerPauses = Field(default_factory=LayerPauses)
    gain_db: float = 0.0
    start: float = 2.0
    tail: float = 3.0


Layer = Annotated[MusicLayer | SpeechLayer, Field(discriminator="kind")]


class Track(_Model):
    title: str
    prompt: str  # "" on a layered track: its music layers have the prompts
    lyrics: str | None = None
    lyrics_file: Path | None = None
    duration: float
    seed: int
    params: dict[str, Any] = Field(default_factory=dict)
    file: str
    line: int
    # Effective fades in seconds: the track's own, a crossfade's (its own into the next, the
    # previous track's into it), none next to a segue, else the album's.
    fade_in: float = 0.0
    fade_out: float = 0.0
    segue: bool = False  # runs straight into the next track
    crossfade: float = 0.0  # into the next track: this fade-out and the next one's fade-in
    # A layered track mixes these (at least one music and one spoken layer); its `duration`
    # is then the least it runs (0: as long as its voices and their tails).
    layers: list[Layer] = Field(default_factory=list)


class Album(_Model):
    kind: Literal["album"] = "album"
    title: str
    artist: str
    genre: str | None = None
    year: int | None = None
    cover: Path | None = None
    description: str | None = None
    seed: int = 0
    params: dict[str, Any] = Field(default_factory=dict)
    fade_in: float = 0.0  # the album's defaults, as written; each track holds its own
    fade_out: float = 0.0
    formats: list[Format] = Field(default_factory=_album_formats)
    encoding: dict[str, Encoding] = Field(default_factory=dict)
    lyrics_files: list[LyricsFormat] = Field(default_factory=list)
    output: Path | None = None
    profile: str | None = None
    priority: int = 0
    tracks: list[Track]


Manifest = Annotated[Audiobook | Album, Field(discriminator="kind")]


@dataclass(frozen=True)
class LoadedManifest:
    path: Path  # absolute
    source_sha256: str  # of the manifest file's bytes
    manifest: Audiobook | Album
    slug: str  # from the title; names the output folder
    # "file:line:col: field: " of what names the output files (`output:`, else `title:`), for
    # errors about them found later (two manifests writing one file).
    outputs_where: str = ""
    # The YAML as written, with positions: plan-time checks (engine params, languages) point
    # at the line that set the value.
    doc: StrictDocument | None = dataclass_field(default=None, compare=False, repr=False)


# --- raw models (the YAML as written) -------------------------------------------------------


class _Raw(BaseModel):
    # strict: YAML already gave us typed values, so "5" for a number or "yes" for a bool is a
    # mistake to report, not to coerce.
    model_config = ConfigDict(extra="forbid", strict=True)


class _RawVoice(_Raw):
    reference: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class _RawChapter(_Raw):
    title: Title
    text: str | None = None
    text_file: str | None = None
    voice: _RawVoice | None = None
    pauses: Pauses | None = None
    seed: Seed | None = None
    file: str | None = None


class _RawEncoding(_Raw):
    """One format's encoding (`encoding: {mp3: {bitrate: 192, ...}}`): what the mastering
    preset, else the format, would use otherwise."""

    bitrate: Annotated[int, Field(ge=8, le=512)] | None = None  # kbit/s
    sample_rate: SampleRate | None = None
    channels: Literal[1, 2] | None = None
    # Not strict: YAML gives text, and strict mode takes only the enum's own members.
    mode: Annotated[BitrateMode, Field(strict=False)] | None = None


def _lexicon_entry(value: Any) -> Any:
    # `Name: respelling` is short for `Name: {say: respelling}`.
    return {"say": value} if isinstance(value, str) else value


class _RawLexiconEntry(_Raw):
    """How one word, phrase or pattern of a lexicon is said (see normalise/lexicon.py)."""

    say: str | None = None
    espeak: str | None = None
    ipa: str | None = None  # converted to `espeak` for the book's language (normalise/ipa.py)
    pattern: bool = False


# Entries are validated one by one (`_lexicon_entries`), each at its own path, so an unknown
# field inside one gets the entry's known fields as its "did you mean".
RawLexicon = dict[str, Any]


class _RawLexiconFile(_Raw):
    """A shared lexicon (`lexicon_file:`): the same `lexicon:` mapping a manifest takes."""

    lexicon: RawLexicon


class _RawAudiobook(_Raw):
    kind: Literal["audiobook"]
    title: Title
    author: Title
    narrator: str | None = None
    language: Language = "en"
    cover: str | None = None
    description: str | None = None
    year: Year | None = None
    subtitle: Title | None = None
    publisher: Title | None = None
    series: Title | None = None
    series_part: SeriesPart | None = None
    isbn: Isbn | None = None
    asin: Asin | None = None
    voice: _RawVoice = Field(default_factory=_RawVoice)
    seed: Seed = 0
    pauses: Pauses = Field(default_factory=Pauses)
    speak_titles: bool = True
    formats: list[Format] = Field(default_factory=_book_formats, min_length=1)
    encoding: dict[Format, _RawEncoding] = Field(default_factory=dict)
    master: PresetField | None = None
    subtitles: SubtitleFormats = Field(default_factory=list)
    parts: Parts | None = None
    credits: Annotated[Credits | None, BeforeValidator(_credits_mapping)] = None
    normalise: bool = True
    lexicon: RawLexicon = Field(default_factory=dict)
    lexicon_file: str | None = None
    output: str | None = None
    profile: str | None = None
    priority: Priority = 0
    chapters: list[_RawChapter] = Field(min_length=1)


class _RawLayer(_Raw):
    """One layer as written: a music layer has `prompt`, a spoken one `text` or
    `text_file`; the builder refuses the other kind's fields."""

    prompt: Title | None = None
    text: str | None = None
    text_file: str | None = None
    duration: TrackSeconds | None = None
    seed: Seed | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    voice: _RawVoice | None = None
    language: Language | None = None
    pauses: LayerPauses | None = None
    gain_db: GainDb = 0.0
    duck: DuckDb | None = None
    start: LayerStart | None = None
    tail: LayerTail | None = None


class _RawTrack(_Raw):
    title: Title
    prompt: Title | None = None  # required unless the track has `layers`
    lyrics: str | None = None
    lyrics_file: str | None = None
    duration: TrackSeconds | None = None  # required unless the track has `layers`
    seed: Seed | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    file: str | None = None
    fade_in: FadeSeconds | None = None
    fade_out: FadeSeconds | None = None
    crossfade: FadeSeconds | None = None
    segue: bool = False
    layers: list[_RawLayer] | None = None


class _RawAlbum(_Raw):
    kind: Literal["album"]
    title: Title
    artist: Title
    genre: str | None = None
    year: Year | None = None
    cover: str | None = None
    description: str | None = None
    seed: Seed = 0
    params: dict[str, Any] = Field(default_factory=dict)
    fade_in: FadeSeconds | None = None
    fade_out: FadeSeconds | None = None
    formats: list[Format] = Field(default_factory=_album_formats, min_length=1)
    encoding: dict[Format, _RawEncoding] = Field(default_factory=dict)
    lyrics_files: list[LyricsFormat] = Field(default_factory=list)
    output: str | None = None
    profile: str | None = None
    priority: Priority = 0
    tracks: list[_RawTrack] = Field(min_length=1)


_RawT = TypeVar("_RawT", bound=_Raw)

# --- loading --------------------------------------------------------------------------------


def load_manifest(path: Path | str) -> LoadedManifest:
    """Read, validate and resolve a manifest; raises ManifestError (one line) on any problem."""
    shown = Path(path)  # errors name the file as the user wrote it
    absolute = shown.expanduser().resolve()
    problem = special_file_problem(absolute)
    if problem is not None:
        raise ManifestError(shown, f"cannot read manifest: it {problem}")
    try:
        data = absolute.read_bytes()
    except OSError as exc:
        raise ManifestError(shown, f"cannot read manifest: {exc.strerror or exc}") from None
    doc = parse_yaml(data, shown)
    builder = _Builder(doc, absolute.parent)
    manifest: Audiobook | Album
    if _kind(doc) == "audiobook":
        manifest = builder.audiobook(_validate(doc, _RawAudiobook))
    else:
        manifest = builder.album(_validate(doc, _RawAlbum))
    field = "output" if "output" in doc.data else "title"
    line, col = doc.position((field,))
    return LoadedManifest(
        path=absolute,
        source_sha256=hashlib.sha256(data).hexdigest(),
        manifest=manifest,
        slug=slugify(manifest.title),
        outputs_where=f"{shown}:{line}:{col}: {field}: ",
        doc=doc,
    )


def _kind(doc: StrictDocument) -> str:
    """Check `kind` first so a wrong kind is reported as such, not as a pile of field errors."""
    expected = "expected 'audiobook' or 'album'"
    if "kind" not in doc.data:
        line, col = doc.position(())
        raise ManifestError(
            doc.file, f"required field is missing; {expected}", line=line, col=col, field="kind"
        )
    kind = doc.data["kind"]
    if kind not in KINDS:
        raise doc.error(("kind",), f"unknown kind {kind!r}; {expected}")
    return str(kind)


def _validate(doc: StrictDocument, model: type[_RawT]) -> _RawT:
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise validation_error(exc, doc, model) from None


class _Builder:
    """Second pass: file checks, merging and output names, with positions from the document."""

    def __init__(self, doc: StrictDocument, base: Path) -> None:
        self.doc = doc
        self.base = base

    def fail(self, path: FieldPath, message: str) -> ManifestError:
        return self.doc.error(path, message)

    # audiobooks

    def audiobook(self, raw: _RawAudiobook) -> Audiobook:
        # Checked in document order, so the first problem reported is the first one written.
        cover = self.cover(raw.cover)
        self.check_formats(raw.formats, allow_m4b=True)
        self.check_subtitles(raw.subtitles)
        self.check_parts(raw)
        voice = self.voice(raw.voice, ("voice",), Voice())
        chapters = [self.chapter(item, i, raw, voice) for i, item in enumerate(raw.chapters)]
        self.check_unique_files([c.file for c in chapters], "chapters", "chapter")
        self.check_book_subtitles(raw, [c.file for c in chapters])
        chapters = self.with_credits(raw, voice, chapters)
        lexicon = self.lexicon(raw)
        return Audiobook(
            title=raw.title,
            author=raw.author,
            narrator=raw.narrator,
            language=raw.language,
            cover=cover,
            description=raw.description,
            year=raw.year,
            publishing=Publishing(
                subtitle=raw.subtitle,
                publisher=raw.publisher,
                series=raw.series,
                series_part=self.series_part(raw),
                isbn=None if raw.isbn is None else str(raw.isbn),
                asin=raw.asin,
            ),
            voice=voice,
            seed=raw.seed,
            pauses=raw.pauses,
            speak_titles=raw.speak_titles,
            formats=raw.formats,
            encoding=self.encoding(raw.encoding, raw.formats),
            master=raw.master,
            subtitles=raw.subtitles,
            parts=raw.parts,
            normalise=raw.normalise,
            lexicon=lexicon,
            output=self.output(raw.output),
            profile=raw.profile,
            priority=raw.priority,
            chapters=chapters,
        )

    def lexicon(self, raw: _RawAudiobook) -> list[LexiconEntry]:
        """The shared file's entries, then the book's own: a word in both is the book's."""
        entries: dict[str, LexiconEntry] = {}
        if raw.lexicon_file is not None:
            _, text = self.read_text(raw.lexicon_file, ("lexicon_file",))
            shared = parse_yaml(text, Path(raw.lexicon_file))
            try:
                parsed = _RawLexiconFile.model_validate(shared.data)
            except ValidationError as exc:
                raise validation_error(exc, shared, _RawLexiconFile) from None
            entries |= _lexicon_entries(shared, parsed.lexicon, raw.language)
        own = _lexicon_entries(self.doc, raw.lexicon, raw.language)
        return list((entries | own).values())

    def series_part(self, raw: _RawAudiobook) -> str | None:
        if raw.series_part is not None and raw.series is None:
            raise self.fail(("series_part",), "series_part needs the series it is a part of")
        return None if raw.series_part is None else str(raw.series_part)

    def chapter(self, raw: _RawChapter, i: int, book: _RawAudiobook, voice: Voice) -> Chapter:
        path: FieldPath = ("chapters", i)
        text, text_file = self.text_or_file(
            raw.text, raw.text_file, path, ("text", "text_file"), required=True
        )
        assert text is not None
        self.check_speakable(text, raw, i, book.speak_titles)
        overrides = raw.pauses.model_dump(include=raw.pauses.model_fields_set) if raw.pauses else {}
        return Chapter(
            title=raw.title,
            text=text,
            text_file=text_file,
            voice=self.voice(raw.voice, (*path, "voice"), voice) if raw.voice else voice,
            pauses=book.pauses.model_copy(update=overrides),
            seed=book.seed if raw.seed is None else raw.seed,
            file=self.stem(raw.file, i, raw.title),
            line=self.doc.position(path)[0],
            where=path,
        )

    def with_credits(
        self, raw: _RawAudiobook, voice: Voice, chapters: list[Chapter]
    ) -> list[Chapter]:
        """The book's chapters with its credits around them: chapters like the others (the
        book's voice, pauses and seed), so planning, assembly, chapter marks, subtitles and
        mastering treat them as any chapter. Their files sort first (`00 - Opening Credits`)
        and last (numbered after the last chapter), as ACX wants them."""
        if raw.credits is None:
            return chapters
        opening = self.credits_chapter(raw, voice, "opening", raw.credits.opening, 0)
        closing = self.credits_chapter(
            raw, voice, "closing", raw.credits.closing, len(chapters) + 1
        )
        stems = {c.file.casefold(): i for i, c in enumerate(chapters)}
        for credit in (opening, closing):
            if credit is None or credit.file.casefold() not in stems:
                continue
            i = stems[credit.file.casefold()]
            where: FieldPath = ("chapters", i)
            if "file" in self.doc.data["chapters"][i]:
                where = (*where, "file")
            raise self.fail(
                where,
                f"output file name {credit.file!r} is the {credit.credits} credits' file"
                f" (credits.{credit.credits}); give chapter {i + 1} a different `file:`",
            )
        return [
            *([opening] if opening else []),
            *chapters,
            *([closing] if closing else []),
        ]

    def credits_chapter(
        self,
        raw: _RawAudiobook,
        voice: Voice,
        role: CreditsRole,
        value: bool | str,
        number: int,
    ) -> Chapter | None:
        if value is False:
            return None
        where: FieldPath = ("credits", role)
        if value is True:
            text = credits_text(
                raw.title,
                raw.author,
                subtitle=raw.subtitle,
                narrator=raw.narrator,
                publisher=raw.publisher,
                year=raw.year,
                closing=role == "closing",
            )
        else:
            text = value
        if not textlib.is_speakable(text):
            raise self.fail(
                where,
                f"the {role} credits have nothing to speak: their text has no letters or digits",
            )
        title = OPENING_CREDITS if role == "opening" else CLOSING_CREDITS
        return Chapter(
            title=title,
            text=text,
            voice=voice,
            pauses=raw.pauses,
            seed=raw.seed,
            file=safe_filename(f"{number:02d} - {title}"),
            line=self.doc.position(where)[0],
            where=where,
            credits=role,
        )

    def check_speakable(self, text: str, raw: _RawChapter, i: int, speak_titles: bool) -> None:
        """A chapter must say something. Checked on what the planner will read, so a text of
        zero-width spaces or "* * *" is this error at the chapter's line, never an empty
        chapter or an internal error later."""
        name = "text_file" if raw.text_file is not None else "text"
        where = f"chapter {i + 1} ({raw.title!r})"
        if not textlib.has_visible_text(text):
            message = (
                f"{where} has no text: only whitespace and invisible characters"
                " (zero-width, format or separator characters)"
            )
        elif textlib.is_speakable(text) or (speak_titles and textlib.is_speakable(raw.title)):
            return
        else:
            message = f"{where} has nothing to speak: its text has no letters or digits"
            if not speak_titles:
                message += " and speak_titles is false"
        line, col = self.doc.position(("chapters", i))
        raise ManifestError(
            self.doc.file, message, line=line, col=col, field=f"chapters[{i}].{name}"
        )

    def voice(self, raw: _RawVoice, path: FieldPath, inherited: Voice) -> Voice:
        self.check_scalars(raw.params, (*path, "params"))
        reference = inherited.reference
        if raw.reference is not None:
            reference = self.audio_file(raw.reference, (*path, "reference"))
        return Voice(reference=reference, params={**inherited.params, **raw.params})

    # albums

    def album(self, raw: _RawAlbum) -> Album:
        cover = self.cover(raw.cover)
        self.check_formats(raw.formats, allow_m4b=False)
        self.check_scalars(raw.params, ("params",))
        tracks = [self.track(item, i, raw) for i, item in enumerate(raw.tracks)]
        self.check_unique_files([t.file for t in tracks], "tracks", "track")
        tracks = [self.fades(track, i, raw) for i, track in enumerate(tracks)]
        self.check_lyrics_files(raw.lyrics_files, tracks)
        return Album(
            title=raw.title,
            artist=raw.artist,
            genre=raw.genre,
            year=raw.year,
            cover=cover,
            description=raw.description,
            seed=raw.seed,
            params=raw.params,
            fade_in=raw.fade_in or 0.0,
            fade_out=raw.fade_out or 0.0,
            formats=raw.formats,
            encoding=self.encoding(raw.encoding, raw.formats),
            lyrics_files=raw.lyrics_files,
            output=self.output(raw.output),
            profile=raw.profile,
            priority=raw.priority,
            tracks=tracks,
        )

    def track(self, raw: _RawTrack, i: int, album: _RawAlbum) -> Track:
        path: FieldPath = ("tracks", i)
        self.check_scalars(raw.params, (*path, "params"))
        seed = album.seed if raw.seed is None else raw.seed
        params = {**album.params, **raw.params}
        if raw.layers is not None:
            return self.layered_track(raw, i, seed, params)
        for name in ("prompt", "duration"):
            if getattr(raw, name) is None:
                line, col = self.doc.position(path)
                raise ManifestError(
                    self.doc.file,
                    "required field is missing (or give the track `layers`)",
                    line=line,
                    col=col,
                    field=format_path((*path, name)),
                )
        assert raw.prompt is not None and raw.duration is not None
        lyrics, lyrics_file = self.text_or_file(
            raw.lyrics, raw.lyrics_file, path, ("lyrics", "lyrics_file"), required=False
        )
        return Track(
            title=raw.title,
            prompt=raw.prompt,
            lyrics=lyrics,
            lyrics_file=lyrics_file,
            duration=raw.duration,
            seed=seed,
            params=params,
            file=self.stem(raw.file, i, raw.title),
            line=self.doc.position(path)[0],
        )

    def layered_track(self, raw: _RawTrack, i: int, seed: int, params: dict[str, Any]) -> Track:
        """A track mixed from `layers`: its prompts and words are its layers'."""
        path: FieldPath = ("tracks", i)
        assert raw.layers is not None
        for name in ("prompt", "lyrics", "lyrics_file"):
            if getattr(raw, name) is not None:
                raise self.fail(
                    (*path, name),
                    f"a layered track's {name.split('_')[0]} belongs in its layers:"
                    " a music layer's `prompt`, a spoken layer's `text`",
                )
        layers = [
            self.layer(item, (*path, "layers", j), seed, params)
            for j, item in enumerate(raw.layers)
        ]
        kinds = {layer.kind for layer in layers}
        if kinds != {"music", "speech"}:
            raise self.fail(
                (*path, "layers"),
                "a layered track needs at least one music layer (with `prompt`) and one"
                " spoken layer (with `text` or `text_file`)",
            )
        return Track(
            title=raw.title,
            prompt="",
            duration=raw.duration or 0.0,
            seed=seed,
            params=params,
            file=self.stem(raw.file, i, raw.title),
            line=self.doc.position(path)[0],
            layers=layers,
        )

    def layer(
        self, raw: _RawLayer, path: FieldPath, seed: int, params: dict[str, Any]
    ) -> MusicLayer | SpeechLayer:
        spoken = raw.text is not None or raw.text_file is not None
        if raw.prompt is not None and spoken:
            other = "text" if raw.text is not None else "text_file"
            raise self.fail(
                (*path, other),
                "a layer is music (`prompt`) or spoken (`text`), not both: make two layers",
            )
        if raw.prompt is None and not spoken:
            raise self.fail(path, "a layer needs `prompt` (music) or `text` (spoken)")
        kind, foreign = (
            ("spoken", ("duration", "params", "duck"))
            if spoken
            else ("music", ("voice", "language", "pauses", "start", "tail"))
        )
        for name in foreign:
            if getattr(raw, name) is not None and (name != "params" or raw.params):
                raise self.fail((*path, name), _FOREIGN_LAYER_FIELD[kind][name])
        seed = seed if raw.seed is None else raw.seed
        if not spoken:
            assert raw.prompt is not None
            self.check_scalars(raw.params, (*path, "params"))
            return MusicLayer(
                prompt=raw.prompt,
                duration=raw.duration,
                seed=seed,
                params={**params, **raw.params},
                gain_db=raw.gain_db,
                duck_db=DEFAULT_DUCK_DB if raw.duck is None else raw.duck,
            )
        text, text_file = self.text_or_file(
            raw.text, raw.text_file, path, ("text", "text_file"), required=True
        )
        assert text is not None
        if not textlib.is_speakable(text):
            raise self.fail(
                (*path, "text_file" if text_file else "text"),
                "a spoken layer has nothing to speak: its text has no letters or digits",
            )
        voice = self.voice(raw.voice, (*path, "voice"), Voice()) if raw.voice else Voice()
        return SpeechLayer(
            text=text,
            text_file=text_file,
            voice=voice,
            language=raw.language or "en",
            seed=seed,
            pauses=raw.pauses or LayerPauses(),
            gain_db=raw.gain_db,
            start=2.0 if raw.start is None else raw.start,
            tail=3.0 if raw.tail is None else raw.tail,
        )

    def check_lyrics_files(self, formats: list[LyricsFormat], tracks: list[Track]) -> None:
        """A lyrics file needs its lines' times: only a spoken layer's are known."""
        for i, fmt in enumerate(formats):
            if fmt in formats[:i]:
                raise self.fail(("lyrics_files", i), f"{fmt!r} is listed twice")
        if formats and not any(track.layers for track in tracks):
            raise self.fail(
                ("lyrics_files",),
                "no track has timed lyrics: an .lrc needs each line's time, which only a"
                " spoken layer gives (a music engine says nothing of when it sings a line)",
            )

    def fades(self, track: Track, i: int, album: _RawAlbum) -> Track:
        """The track's effective fades, each checked against the track's length at the field
        that set it. A segue has no fade on either side of it; a crossfade is this track's
        fade-out and the next one's fade-in; otherwise the track's own, else the album's."""
        raw = album.tracks[i]
        here: FieldPath = ("tracks", i)
        last = i == len(album.tracks) - 1
        if raw.segue and last:
            raise self.fail((*here, "segue"), "the last track has no next track to segue into")
        if raw.crossfade is not None and last:
            raise self.fail(
                (*here, "crossfade"), "the last track has no next track to crossfade into"
            )
        if raw.segue and raw.crossfade is not None:
            raise self.fail(
                (*here, "crossfade"),
                "a segue runs straight into the next track and a crossfade fades into it:"
                " choose one",
            )
        if raw.fade_out is not None and (raw.segue or raw.crossfade is not None):
            how = "segues into the next track" if raw.segue else "crossfades into the next track"
            raise self.fail(
                (*here, "fade_out"),
                f"this track {how}, which sets its fade-out: remove fade_out",
            )
        previous = album.tracks[i - 1] if i else None
        fade_in: tuple[float, FieldPath] = (album.fade_in or 0.0, ("fade_in",))
        if previous is not None and (previous.segue or previous.crossfade is not None):
            how = "segues" if previous.segue else "crossfades"
            if raw.fade_in is not None:
                raise self.fail(
                    (*here, "fade_in"),
                    f"track {i} {how} into this one, which sets its fade-in: remove fade_in",
                )
            fade_in = (previous.crossfade or 0.0, ("tracks", i - 1, "crossfade"))
        elif raw.fade_in is not None:
            fade_in = (raw.fade_in, (*here, "fade_in"))
        fade_out: tuple[float, FieldPath] = (album.fade_out or 0.0, ("fade_out",))
        if raw.segue:
            fade_out = (0.0, (*here, "segue"))
        elif raw.crossfade is not None:
            fade_out = (raw.crossfade, (*here, "crossfade"))
        elif raw.fade_out is not None:
            fade_out = (raw.fade_out, (*here, "fade_out"))
        # A layered track's length is its voices' until rendered: a fade is then held
        # inside it (fades.fade_frames), never refused on a guess.
        checked = [] if track.layers and not track.duration else [fade_in, fade_out]
        for seconds, path in checked:
            if seconds > track.duration:
                whose = f"track {i + 1} ({track.title!r})"
                hint = "" if path[0] == "tracks" else f"; give {whose} a shorter `{path[0]}:`"
                what = _FADE_WORDS.get(str(path[-1]), "crossfade")
                raise self.fail(
                    path,
                    f"a {seconds:g} s {what} is longer than {whose}, {track.duration:g} s{hint}",
                )
        return track.model_copy(
            update={
                "fade_in": fade_in[0],
                "fade_out": fade_out[0],
                "segue": raw.segue,
                "crossfade": raw.crossfade or 0.0,
            }
        )

    # shared checks

    def check_formats(self, formats: list[Format], *, allow_m4b: bool) -> None:
        seen: set[str] = set()
        for i, fmt in enumerate(formats):
            if fmt in ("m4b", "mp3-book") and not allow_m4b:
                raise self.fail(
                    ("formats", i),
                    f"{fmt} is an audiobook format; albums can use mp3, flac, opus, wav",
                )
            if fmt in seen:
                raise self.fail(("formats", i), f"{fmt!r} is listed twice")
            seen.add(fmt)

    def encoding(
        self, raw: dict[Format, _RawEncoding], formats: list[Format]
    ) -> dict[str, Encoding]:
        """Each format's settings (None where it sets none), checked against what its encoder
        can do."""
        settings: dict[str, Encoding] = {}
        for fmt, chosen in raw.items():
            path: FieldPath = ("encoding", fmt)
            if fmt not in formats:
                raise self.fail(path, f"{fmt} is not in formats: {', '.join(formats)}")
            encoding = Encoding(
                sample_rate=chosen.sample_rate,
                channels=chosen.channels,
                bitrate_kbps=chosen.bitrate,
                mode=chosen.mode,
            )
            problem = _encoding_problem(fmt, encoding)
            if problem is not None:
                raise self.fail((*path, problem[0]), problem[1])
            settings[fmt] = encoding
        return settings

    def check_subtitles(self, formats: list[SubtitleFormat]) -> None:
        for i, fmt in enumerate(formats):
            if fmt in formats[:i]:
                raise self.fail(("subtitles", i), f"{fmt!r} is listed twice")

    def check_parts(self, raw: _RawAudiobook) -> None:
        """`parts:` names exactly one limit, and splits the whole book's files: it needs m4b or
        mp3-book."""
        if raw.parts is None:
            return
        given = [
            name for name in ("max_hours", "max_bytes") if getattr(raw.parts, name) is not None
        ]
        if not given:
            raise self.fail(("parts",), "give one limit: `max_hours` or `max_bytes`")
        if len(given) > 1:
            raise self.fail(
                ("parts", given[1]), "give one limit, `max_hours` or `max_bytes`, not both"
            )
        if "m4b" not in raw.formats and "mp3-book" not in raw.formats:
            raise self.fail(
                ("parts",),
                "parts split the book's .m4b (or book .mp3): add m4b (or mp3-book) to"
                " `formats`, or remove `parts`",
            )

    def check_book_subtitles(self, raw: _RawAudiobook, stems: list[str]) -> None:
        """The whole book's subtitles share the .m4b's stem: a chapter file of that stem
        would get the same subtitle file name."""
        formats, book_formats = set(raw.formats), {"m4b", "mp3-book"}
        if not raw.subtitles or not formats & book_formats or formats <= book_formats:
            return
        book = safe_filename(raw.title).casefold()
        for i, stem in enumerate(stems):
            if stem.casefold() == book:
                chapter = self.doc.data["chapters"][i]
                where = ("chapters", i, "file") if "file" in chapter else ("chapters", i)
                raise self.fail(
                    where,
                    f"chapter {i + 1}'s file name {stem!r} is the book's: its subtitles and the"
                    " whole book's would be one file; give the chapter a different `file:`",
                )

    def check_scalars(self, params: dict[str, Any], path: FieldPath) -> None:
        # Engine parameters end up in job keys and API calls: plain values only.
        for key, value in params.items():
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise self.fail(
                    (*path, key), "engine parameters must be single values (text, number, bool)"
                )

    def check_unique_files(self, stems: list[str], items: str, noun: str) -> None:
        first: dict[str, int] = {}
        for i, stem in enumerate(stems):
            key = stem.casefold()  # macOS and Windows file names ignore case
            if key in first:
                j = first[key]
                line = self.doc.position((items, j))[0]
                where = (items, i, "file") if "file" in self.doc.data[items][i] else (items, i)
                raise self.fail(
                    where,
                    f"output file name {stem!r} is the same as {noun} {j + 1}'s (line {line}); "
                    "give one of them a different `file:`",
                )
            first[key] = i

    def stem(self, given: str | None, i: int, title: str) -> str:
        return safe_filename(given if given is not None else f"{i + 1:02d} - {title}")

    def text_or_file(
        self,
        inline: str | None,
        file: str | None,
        path: FieldPath,
        names: tuple[str, str],
        *,
        required: bool,
    ) -> tuple[str | None, Path | None]:
        """Exactly one of `inline`/`file` (at most one if not `required`), never blank."""
        text_name, file_name = names
        if inline is not None and file is not None:
            raise self.fail((*path, file_name), f"give either {text_name} or {file_name}, not both")
        if file is not None:
            resolved, text = self.read_text(file, (*path, file_name))
            if not text.strip():
                raise self.fail((*path, file_name), f"{file_name} {file!r} has no text")
            return text, resolved
        if inline is None:
            if required:
                raise self.fail(path, f"needs {text_name} or {file_name}")
            return None, None
        if not inline.strip():
            raise self.fail((*path, text_name), f"{text_name} is empty")
        return inline, None

    def resolve(self, value: str) -> Path:
        return (self.base / Path(value).expanduser()).resolve()

    def existing_file(self, value: str, path: FieldPath) -> Path:
        resolved = self.resolve(value)
        problem = special_file_problem(resolved)
        if problem is not None:
            raise self.fail(path, f"{value!r} {problem}")
        if not resolved.is_file():
            raise self.fail(path, f"{value!r} not found (looked for {resolved})")
        return resolved

    def read_bytes(self, value: str, path: FieldPath) -> tuple[Path, bytes]:
        resolved = self.existing_file(value, path)
        try:
            return resolved, resolved.read_bytes()
        except OSError as exc:
            raise self.fail(path, f"cannot read {value!r}: {exc.strerror or exc}") from None

    def read_text(self, value: str, path: FieldPath) -> tuple[Path, str]:
        resolved, data = self.read_bytes(value, path)
        try:
            text = decode_utf8(data, what=repr(value))
        except TextEncodingError as exc:
            raise self.fail(path, exc.message) from None
        return resolved, text.replace("\r\n", "\n").replace("\r", "\n")

    def audio_file(self, value: str, path: FieldPath) -> Path:
        resolved, data = self.read_bytes(value, path)
        if not data:
            raise self.fail(path, f"{value!r} is empty (0 bytes)")
        try:
            frames = soundfile.info(str(resolved)).frames
        except Exception as exc:  # libsndfile raises several types; any means "not audio"
            raise self.fail(path, f"{value!r} is not readable audio ({_one_line(exc)})") from None
        if frames <= 0:
            raise self.fail(path, f"{value!r} has no audio frames")
        return resolved

    def cover(self, value: str | None) -> Path | None:
        if value is None:
            return None
        resolved, data = self.read_bytes(value, ("cover",))
        problem = cover_problem(data)
        if problem is not None:
            raise self.fail(("cover",), f"{value!r} {problem}")
        return resolved

    def output(self, value: str | None) -> Path | None:
        return None if value is None else self.resolve(value)


MAX_COVER_BYTES = 10 * 1024 * 1024  # a 3000 x 3000 JPEG, more than any store asks, is ~3 MB
_MAX_COVER_PIXELS = 64_000_000


def _lexicon_entries(
    doc: StrictDocument, raw: dict[str, Any], language: str
) -> dict[str, LexiconEntry]:
    entries = {}
    for written, value in raw.items():
        where: FieldPath = ("lexicon", written)
        try:
            entry = _RawLexiconEntry.model_validate(_lexicon_entry(value))
        except ValidationError as exc:
            raise validation_error(exc, doc, _RawLexiconEntry, prefix=where) from None
        problem = _lexicon_problem(written, entry)
        if problem is not None:
            field, message = problem
            raise doc.error((*where, field) if field else where, message, at_key=not field)
        espeak = entry.espeak
        if entry.ipa is not None:
            try:
                espeak = to_espeak(entry.ipa, language)
            except IpaError as exc:
                raise doc.error((*where, "ipa"), f"ipa {entry.ipa!r}: {exc}") from None
        entries[written] = LexiconEntry(written, entry.say, espeak, entry.pattern)
    return entries


def _lexicon_problem(written: str, entry: _RawLexiconEntry) -> tuple[str, str] | None:
    """(field, why) when a lexicon entry cannot be used ("" for the word itself)."""
    if not textlib.has_visible_text(written):
        return "", "a lexicon word must not be empty"
    if entry.pattern and (why := check_pattern(written)) is not None:
        return "", why
    if entry.say is None and entry.espeak is None and entry.ipa is None:
        return "", "say how it is read: `say:` (a respelling) and/or `espeak:` or `ipa:` (phonemes)"
    if entry.espeak is not None and entry.ipa is not None:
        return "ipa", "give the phonemes once: `espeak:` or `ipa:`, not both"
    for field, value in (("say", entry.say), ("espeak", entry.espeak), ("ipa", entry.ipa)):
        if value is not None and not textlib.has_visible_text(value):
            return field, f"{field} must not be empty"
    if entry.espeak is not None and ("[[" in entry.espeak or "]]" in entry.espeak):
        return "espeak", "write the phonemes without [[ ]]: songbatch adds them"
    return None


def cover_problem(data: bytes) -> str | None:
    """Why `data` is not a usable cover, or None. Decoded in full, not judged by its first
    bytes: a truncated or corrupt image would otherwise be embedded into every file."""
    if len(data) > MAX_COVER_BYTES:
        return (
            f"is {len(data) / 1e6:.1f} MB; covers are limited to {MAX_COVER_BYTES // 2**20} MB"
            " (a 2400 x 2400 JPEG, what audiobook stores ask for, is about 1-2 MB)"
        )
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format not in ("JPEG", "PNG"):
                    return f"is a {image.format or 'unknown'} image, not a JPEG or PNG image"
                width, height = image.size
                if width * height > _MAX_COVER_PIXELS:
                    return f"is {width} x {height} pixels: too large for a cover"
                image.load()
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        return "is too many pixels for a cover"
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... all "not an image"
        if not data.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")):
            return "is not a JPEG or PNG image"
        return f"is not a JPEG or PNG image that decodes ({_one_line(exc)})"
    return None


def _one_line(exc: BaseException) -> str:
    # libsndfile's messages start with "Error opening '<absolute path>': "; the field says which.
    text = re.sub(r"^Error opening .*?: ", "", " ".join(str(exc).split()))
    return text or type(exc).__name__


# --- credits --------------------------------------------------------------------------------


def credits_text(
    title: str,
    author: str,
    *,
    subtitle: str | None = None,
    narrator: str | None = None,
    publisher: str | None = None,
    year: int | None = None,
    closing: bool = False,
) -> str:
    """What `credits: {opening: true}` (or `closing: true`) speaks, one paragraph a line of
    credits (a paragraph pause between them). Opening: the title (and subtitle), the author,
    the narrator, the publisher and year where set; closing: "The end.", then the title, the
    author and the narrator, as ACX asks."""
    paragraphs = ["The end."] if closing else []
    heading = _sentence(title)
    if subtitle and subtitle.strip():
        heading += " " + _sentence(subtitle.strip())
    paragraphs.append(heading)
    paragraphs.append(f"Written by {_sentence(author)}")
    if narrator and narrator.strip():
        paragraphs.append(f"Narrated by {_sentence(narrator.strip())}")
    if not closing:
        if publisher and year is not None:
            paragraphs.append(f"Published by {publisher}, {year}.")
        elif publisher:
            paragraphs.append(f"Published by {_sentence(publisher)}")
        elif year is not None:
            paragraphs.append(f"Published in {year}.")
    return "\n\n".join(paragraphs)


def _sentence(text: str) -> str:
    """`text` ending as a sentence does: a full stop added unless it has its own end."""
    text = text.strip()
    if text.rstrip("\"'”’)]»").endswith((".", "!", "?", "…")):
        return text
    return text + "."


# --- names ----------------------------------------------------------------------------------

_WINDOWS_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_REPLACEMENTS = str.maketrans(
    {"/": "-", "\\": "-", "|": "-", ":": " -", "*": " ", "?": " ", '"': " ", "<": " ", ">": " "}
)


def safe_filename(name: str, max_bytes: int = 120) -> str:
    """A file name stem that is valid on Windows, macOS and Linux and at most `max_bytes` long."""
    text = unicodedata.normalize("NFC", name)
    text = "".join(" " if ch.isspace() else ch for ch in text)
    # Cc: control characters; Cf: format characters, including bidi overrides (U+202E) that
    # make a name display differently from what it is; Cs: lone surrogates.
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cc", "Cf", "Cs"))
    text = " ".join(text.translate(_REPLACEMENTS).split())
    text = _truncate_utf8(text.strip(" ."), max_bytes).strip(" .")
    base = text.split(".", 1)[0].rstrip(" ")
    if base.upper() in _WINDOWS_RESERVED:
        # Windows reserves these with any extension, so mark the part before the first dot.
        text = text[: len(base)] + "_" + text[len(base) :]
        text = _truncate_utf8(text, max_bytes).strip(" .")
    return text or "untitled"


def _truncate_utf8(text: str, max_bytes: int) -> str:
    return text.encode("utf-8")[:max_bytes].decode("utf-8", errors="ignore")


def slugify(title: str, max_bytes: int = 96) -> str:
    """A folder name from a title: lowercase letters, marks and digits of any script joined by
    '-', safe on every filesystem (no reserved characters or names, at most `max_bytes` of
    UTF-8); 'untitled' if nothing is left. NFKC first, so full-width and ligature forms fold to
    the letters they stand for and two spellings of one title meet in one folder."""
    text = unicodedata.normalize("NFKC", title).lower()
    kept = "".join(ch if unicodedata.category(ch)[0] in "LMN" else "-" for ch in text)
    slug = re.sub(r"-+", "-", kept).strip("-")
    slug = _truncate_utf8(slug, max_bytes).rstrip("-")
    # A mark must not start a name: it would combine with whatever is shown before it.
    while slug and unicodedata.category(slug[0])[0] == "M":
        slug = slug[1:].lstrip("-")
    slug = unicodedata.normalize("NFC", slug)
    if slug.upper() in _WINDOWS_RESERVED:
        slug += "_"
    return slug or "untitled"


__all__ = [
    "Album",
    "Audiobook",
    "Chapter",
    "Credits",
    "Format",
    "LoadedManifest",
    "Manifest",
    "Pauses",
    "Track",
    "Voice",
    "credits_text",
    "format_path",
    "load_manifest",
    "parse_seconds",
    "safe_filename",
    "slugify",
]
