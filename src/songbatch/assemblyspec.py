"""The assembly spec: what the planner decides for the stages after rendering (the output
folder, the formats, the tags, each unit's file and how its audio is laid out), stored with the
manifest's row in the ledger and read back by assembly, outputs, gc, status and check, which
never read the manifest.

Typed so that every field is named once and mypy checks both ends; `to_dict` and `from_dict`
are the only code that knows its JSON, at the ledger's edge. That JSON is pinned
(tests/test_typed_boundaries.py): plan hashes are digests of it, and a layered unit's master key
digests its layers as stored, so every field written only when set (fades, parts, encoding,
master, subtitles, lyrics files, publishing tags) stays absent where it was absent. A key
added to every spec would make each workspace plan, and some assemble, again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, TypeAlias

from songbatch.presets import BitrateMode, Encoding

SpecKind = Literal["audiobook", "album"]
JSONObject: TypeAlias = dict[str, Any]


@dataclass(frozen=True)
class MusicLayerSpec:
    """A layered track's music bed: its one job's seq (`seqs` = [seq, seq + 1]), its gain and
    how far it dips under the voices."""

    seqs: tuple[int, int]
    gain_db: float
    duck_db: float

    def to_dict(self) -> JSONObject:
        seqs = list(self.seqs)
        return {"kind": "music", "seqs": seqs, "gain_db": self.gain_db, "duck_db": self.duck_db}


@dataclass(frozen=True)
class SpeechLayerSpec:
    """A layered track's spoken layer: its jobs' seqs [first, stop), where it starts, the room
    after it, and the seq that opens each written line."""

    seqs: tuple[int, int]
    gain_db: float
    start_ms: int
    tail_ms: int
    lines: tuple[int, ...]

    def to_dict(self) -> JSONObject:
        return {
            "kind": "speech",
            "seqs": list(self.seqs),
            "gain_db": self.gain_db,
            "start_ms": self.start_ms,
            "tail_ms": self.tail_ms,
            "lines": list(self.lines),
        }


LayerSpec: TypeAlias = MusicLayerSpec | SpeechLayerSpec


def _layer(data: Mapping[str, Any]) -> LayerSpec:
    first, stop = data["seqs"]
    if data["kind"] == "music":
        return MusicLayerSpec((first, stop), data["gain_db"], data["duck_db"])
    return SpeechLayerSpec(
        (first, stop), data["gain_db"], data["start_ms"], data["tail_ms"], tuple(data["lines"])
    )


@dataclass(frozen=True)
class UnitSpec:
    """A chapter or track: its index, title and file stem; an album track's fades (stored only
    when not 0, so the specs of albums without fades are as they were); a layered track's
    layers and the least it runs (stored only on a layered track)."""

    unit: int
    title: str
    file: str
    fade_in_ms: int = 0
    fade_out_ms: int = 0
    layers: tuple[LayerSpec, ...] = ()
    min_ms: int = 0

    @property
    def layered(self) -> bool:
        return bool(self.layers)

    def to_dict(self) -> JSONObject:
        data: JSONObject = {"unit": self.unit, "title": self.title, "file": self.file}
        if self.fade_in_ms:
            data["fade_in_ms"] = self.fade_in_ms
        if self.fade_out_ms:
            data["fade_out_ms"] = self.fade_out_ms
        if self.layers:
            data["layers"] = [layer.to_dict() for layer in self.layers]
            data["min_ms"] = self.min_ms
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UnitSpec:
        return cls(
            unit=data["unit"],
            title=data["title"],
            file=data["file"],
            fade_in_ms=data.get("fade_in_ms", 0),
            fade_out_ms=data.get("fade_out_ms", 0),
            layers=tuple(_layer(layer) for layer in data.get("layers", ())),
            min_ms=data.get("min_ms", 0),
        )


@dataclass(frozen=True)
class PartsSpec:
    """A book split by `parts:` (present only when it makes more than one part): the
    chapters of each part, and the one limit they were planned to."""

    groups: tuple[tuple[int, ...], ...]
    max_ms: int | None = None
    max_bytes: int | None = None

    def to_dict(self) -> JSONObject:
        limit = {"max_bytes": self.max_bytes} if self.max_ms is None else {"max_ms": self.max_ms}
        return {**limit, "groups": [list(group) for group in self.groups]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartsSpec:
        return cls(
            groups=tuple(tuple(group) for group in data["groups"]),
            max_ms=data.get("max_ms"),
            max_bytes=data.get("max_bytes"),
        )


def _encoding_dict(encoding: Encoding) -> JSONObject:
    """A manifest's `encoding:` settings for one format as the spec stores them: only those
    it sets, under the manifest's names (`bitrate`, the mode as its text)."""
    data = {
        "bitrate": encoding.bitrate_kbps,
        "sample_rate": encoding.sample_rate,
        "channels": encoding.channels,
        "mode": None if encoding.mode is None else encoding.mode.value,
    }
    return {name: value for name, value in data.items() if value is not None}


def _encoding(data: Mapping[str, Any]) -> Encoding:
    mode = data.get("mode")
    return Encoding(
        sample_rate=data.get("sample_rate"),
        channels=data.get("channels"),
        bitrate_kbps=data.get("bitrate"),
        mode=None if mode is None else BitrateMode(mode),
    )


# The tags a book's spec always has (None is stored as null) and an album's never does.
_BOOK_TAGS = ("narrator", "language")


@dataclass(frozen=True)
class Publishing:
    """A book's publishing fields, None where not set: the manifest's (`subtitle:`,
    `publisher:`, ...), which its spec's tags carry (SpecTags is one) and every file of it is
    tagged with (tagging.BOOK_FIELDS says where each goes in every format)."""

    subtitle: str | None = None
    publisher: str | None = None
    series: str | None = None
    series_part: str | None = None
    isbn: str | None = None
    asin: str | None = None


@dataclass(frozen=True, kw_only=True)
class SpecTags(Publishing):
    """The tags every file of the manifest shares (each file adds its title and number); a
    book's publishing fields (Publishing's) are stored only when set, so the specs and
    outputs of books without them stay as they were."""

    album: str
    year: int | None
    description: str | None
    comment: str
    artist: str | None
    album_artist: str | None
    genre: str | None
    narrator: str | None = None  # a book's (see _BOOK_TAGS)
    language: str | None = None

    def to_dict(self, *, book: bool) -> JSONObject:
        """A field without a default always; a book's narrator and language always (an
        album's never); the others only when set."""

        def stored(name: str, default: object, value: object) -> bool:
            return book if name in _BOOK_TAGS else default is MISSING or value is not None

        values = ((f.name, f.default, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, default, value in values if stored(name, default, value)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SpecTags:
        return cls(**data)


@dataclass(frozen=True)
class AssemblySpec:
    """Everything assembly needs, so that stage reads the ledger and never the manifest.
    Fields with a default are stored only when not the default (see the module's note)."""

    kind: SpecKind
    output_dir: Path
    formats: tuple[str, ...]
    cover: Path | None  # the stored copy, under the workspace
    cover_sha256: str | None
    tags: SpecTags
    lead_in_ms: int
    book_file: str  # the whole book's file stem
    units: tuple[UnitSpec, ...]
    # The manifest's `encoding:` settings per format, only those it sets (None: the preset's;
    # presets.spec_encoding lays them over it).
    encoding: Mapping[str, Encoding] = field(default_factory=dict)
    master: str = "none"  # a mastering preset's name
    subtitles: tuple[str, ...] = ()
    lyrics_files: tuple[str, ...] = ()
    parts: PartsSpec | None = None

    @property
    def is_book(self) -> bool:
        return self.kind == "audiobook"

    def to_dict(self) -> JSONObject:
        """The spec as the ledger stores it (and the plan hash digests it)."""
        data: JSONObject = {
            "kind": self.kind,
            "output_dir": str(self.output_dir),
            "formats": list(self.formats),
            "cover": None if self.cover is None else str(self.cover),
            "cover_sha256": self.cover_sha256,
            "tags": self.tags.to_dict(book=self.is_book),
            "lead_in_ms": self.lead_in_ms,
            "book_file": self.book_file,
            "units": [unit.to_dict() for unit in self.units],
        }
        if self.encoding:
            data["encoding"] = {fmt: _encoding_dict(enc) for fmt, enc in self.encoding.items()}
        if self.master != "none":
            data["master"] = self.master
        if self.subtitles:
            data["subtitles"] = list(self.subtitles)
        if self.lyrics_files:
            data["lyrics_files"] = list(self.lyrics_files)
        if self.parts is not None:
            data["parts"] = self.parts.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AssemblySpec:
        """A spec the ledger stored (`to_dict`'s, or an older planner's: every key it reads was
        written from the first, or is one of those stored only when set)."""
        cover = data["cover"]
        parts = data.get("parts")
        return cls(
            kind=data["kind"],
            output_dir=Path(data["output_dir"]),
            formats=tuple(data["formats"]),
            cover=None if cover is None else Path(cover),
            cover_sha256=data["cover_sha256"],
            tags=SpecTags.from_dict(data["tags"]),
            lead_in_ms=data["lead_in_ms"],
            book_file=data["book_file"],
            units=tuple(UnitSpec.from_dict(unit) for unit in data["units"]),
            encoding={fmt: _encoding(enc) for fmt, enc in data.get("encoding", {}).items()},
            master=data.get("master", "none"),
            subtitles=tuple(data.get("subtitles", ())),
            lyrics_files=tuple(data.get("lyrics_files", ())),
            parts=None if parts is None else PartsSpec.from_dict(parts),
        )

    def part_groups(self) -> list[list[int]]:
        """The units of each file of the whole book: one group of every unit, or the
        planner's grouping of a book split into parts."""
        if self.parts is not None and self.parts.groups:
            return [list(group) for group in self.parts.groups]
        return [[unit.unit for unit in self.units]]
