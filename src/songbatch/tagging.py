"""Writing and reading tags with mutagen: ID3v2.4 (MP3, WAV), MP4/M4B atoms, Vorbis comments.

Narrator placement follows what audiobook servers read: Audiobookshelf takes the narrator from
the composer tag (TCOM / ©wrt / COMPOSER), so a narrator goes there, and also into an explicit
NARRATOR field (TXXX:NARRATOR, ----:com.apple.iTunes:NARRATOR, Vorbis NARRATOR). When a file has
both a narrator and a different composer, the composer tag holds the narrator and the composer is
kept in an explicit COMPOSER field instead.

Lyrics (album tracks that have them) go where music servers and players look: ID3 USLT, MP4
©lyr, Vorbis LYRICS. FLAC and Ogg pictures carry the cover's real width, height and colour
depth, which some players use to choose between pictures and which the FLAC format expects.
"""

# mutagen's classes have no annotations on their constructors and save methods; calling them is
# the whole point of this module.
# mypy: disallow-untyped-calls=False
from __future__ import annotations

import base64
import io
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import mutagen
import PIL.Image
from mutagen.flac import FLAC, Picture
from mutagen.id3 import (
    APIC,
    COMM,
    ID3,
    TALB,
    TCOM,
    TCON,
    TDRC,
    TIT2,
    TLAN,
    TPE1,
    TPE2,
    TPOS,
    TRCK,
    TXXX,
    USLT,
    CTOCFlags,
    Frames,
    ID3NoHeaderError,
    PictureType,
)
from mutagen.mp3 import MP3
from mutagen.mp4 import MP4, MP4Cover, MP4FreeForm
from mutagen.oggopus import OggOpus
from mutagen.wave import WAVE

from songbatch.assemblyspec import Publishing
from songbatch.errors import InputError
from songbatch.replaygain import ReplayGain, r128_gain

_ITUNES = "----:com.apple.iTunes:"
ORIGIN_TAG = "SONGBATCH_OUTPUT"
_STIK_AUDIOBOOK = 2


@dataclass
class Tags:
    """What a finished file is labelled with. `cover` is a path to write; `cover_bytes` is what
    `read_tags` found."""

    title: str
    album: str | None = None
    artist: str | None = None
    album_artist: str | None = None
    narrator: str | None = None
    composer: str | None = None
    track: tuple[int, int] | None = None
    disc: tuple[int, int] | None = None
    genre: str | None = None
    year: int | None = None
    language: str | None = None
    description: str | None = None
    comment: str | None = None
    lyrics: str | None = None
    # A book's publishing fields, assemblyspec.Publishing's (BOOK_FIELDS says where each goes
    # in every format); declared again here as Tags is mutable, and a dataclass cannot be
    # both a frozen one's subclass and mutable.
    subtitle: str | None = None
    publisher: str | None = None
    series: str | None = None
    series_part: str | None = None
    isbn: str | None = None
    asin: str | None = None
    replaygain: ReplayGain | None = None  # album tracks
    cover: Path | None = None
    cover_bytes: bytes | None = None
    # "<workspace id>:<inputs hash>" of the songbatch output this is: how a workspace whose
    # ledger was lost still knows its own files from a person's.
    origin: str | None = None


@dataclass(frozen=True)
class BookField:
    """Where one publishing field goes: ID3 (a frame, or TXXX:<desc>), an MP4 freeform atom
    (----:com.apple.iTunes:<name>) and a Vorbis comment. Audiobookshelf reads each through
    ffprobe under these names (`series`, `series-part`, `isbn`, `asin`, `publisher`,
    `subtitle`, case-blind; server/utils/prober.js), and ffmpeg names an MP4 freeform atom and
    an ID3 TXXX frame by their name or description."""

    attr: str
    id3: str
    mp4: str
    vorbis: str


BOOK_FIELDS = (
    BookField("subtitle", "TIT3", "SUBTITLE", "SUBTITLE"),
    BookField("publisher", "TPUB", "PUBLISHER", "PUBLISHER"),
    BookField("series", "TXXX:SERIES", "SERIES", "SERIES"),
    BookField("series_part", "TXXX:SERIES-PART", "SERIES-PART", "SERIES-PART"),
    BookField("isbn", "TXXX:ISBN", "ISBN", "ISBN"),
    BookField("asin", "TXXX:ASIN", "ASIN", "ASIN"),
)


def replaygain_fields(gain: ReplayGain | None) -> dict[str, str | None]:
    """REPLAYGAIN_* values as players read them ("-3.21 dB", peaks as linear ratios); every
    name present, None where not known, so a rewrite clears stale ones."""
    values: dict[str, str | None] = dict.fromkeys(_REPLAYGAIN_NAMES)
    if gain is None:
        return values
    values["REPLAYGAIN_TRACK_GAIN"] = f"{gain.track_gain_db:.2f} dB"
    values["REPLAYGAIN_TRACK_PEAK"] = f"{gain.track_peak:.6f}"
    if gain.album_gain_db is not None and gain.album_peak is not None:
        values["REPLAYGAIN_ALBUM_GAIN"] = f"{gain.album_gain_db:.2f} dB"
        values["REPLAYGAIN_ALBUM_PEAK"] = f"{gain.album_peak:.6f}"
    return values


_REPLAYGAIN_NAMES = (
    "REPLAYGAIN_TRACK_GAIN",
    "REPLAYGAIN_TRACK_PEAK",
    "REPLAYGAIN_ALBUM_GAIN",
    "REPLAYGAIN_ALBUM_PEAK",
)


def _parse_replaygain(text: Callable[[str], str | None]) -> ReplayGain | None:
    """Undo `replaygain_fields`; `text(name)` reads one value (case as written)."""
    track, peak = text("REPLAYGAIN_TRACK_GAIN"), text("REPLAYGAIN_TRACK_PEAK")
    if track is None or peak is None:
        return None
    album, album_peak = text("REPLAYGAIN_ALBUM_GAIN"), text("REPLAYGAIN_ALBUM_PEAK")
    return ReplayGain(
        track_gain_db=float(track.split()[0]),
        track_peak=float(peak),
        album_gain_db=None if album is None else float(album.split()[0]),
        album_peak=None if album_peak is None else float(album_peak),
    )


# Their names: Publishing's fields (the manifest's and the assembly spec's tags), BOOK_FIELDS'
# and Tags' attributes alike (tests/test_book_tags.py holds the three together).
PUBLISHING_TAGS = tuple(item.name for item in fields(Publishing))


def cover_mime(data: bytes) -> str:
    """MIME type from magic bytes; only JPEG and PNG are accepted by every player."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    raise InputError("cover image must be a JPEG or PNG file")


def _cover(tags: Tags) -> tuple[bytes, str] | None:
    if tags.cover is None:
        return None
    data = Path(tags.cover).read_bytes()
    try:
        return data, cover_mime(data)
    except InputError:
        raise InputError(f"{tags.cover}: cover image must be a JPEG or PNG file") from None


def _composer_fields(tags: Tags) -> tuple[str | None, str | None]:
    """(value for the composer tag, composer to keep in an explicit field, if displaced)."""
    if tags.narrator:
        displaced = tags.composer if tags.composer and tags.composer != tags.narrator else None
        return tags.narrator, displaced
    return tags.composer, None


def write_tags(path: Path, fmt: str, tags: Tags) -> None:
    """Write `tags` into the file at `path`, an encoded `fmt` ("m4b", "m4a", "mp3", "flac",
    "opus" or "wav"). Existing tags of the same names are replaced; others are left alone."""
    if fmt in ("m4b", "m4a", "mp4"):
        _write_mp4(path, tags, audiobook=fmt == "m4b")
    elif fmt == "mp3":
        _write_mp3(path, tags)
    elif fmt == "flac":
        _write_flac(path, tags)
    elif fmt == "opus":
        _write_opus(path, tags)
    elif fmt == "wav":
        _write_wav(path, tags)
    else:
        raise InputError(f"cannot tag format {fmt!r}")


# --- ID3 (MP3 and WAV) -----------------------------------------------------------------------


def _fill_id3(id3: Any, tags: Tags) -> None:
    composer, displaced = _composer_fields(tags)
    text_frames: list[tuple[type[Any], str | None]] = [
        (TIT2, tags.title),
        (TALB, tags.album),
        (TPE1, tags.artist),
        (TPE2, tags.album_artist),
        (TCOM, composer),
        (TCON, tags.genre),
        (TDRC, None if tags.year is None else str(tags.year)),
        (TLAN, tags.language),
        (TRCK, _pair(tags.track)),
        (TPOS, _pair(tags.disc)),
    ]
    for frame, value in text_frames:
        id3.delall(frame.__name__)
        if value:
            id3.add(frame(encoding=3, text=[value]))
    for desc, value in (
        ("NARRATOR", tags.narrator),
        ("DESCRIPTION", tags.description),
        ("COMPOSER", displaced),
        (ORIGIN_TAG, tags.origin),
    ):
        id3.delall(f"TXXX:{desc}")
        if value:
            id3.add(TXXX(encoding=3, desc=desc, text=[value]))
    for book_field in BOOK_FIELDS:
        _set_id3_text(id3, book_field.id3, getattr(tags, book_field.attr))
    for name, value in replaygain_fields(tags.replaygain).items():
        _set_id3_text(id3, f"TXXX:{name}", value)
    id3.delall("COMM")
    if tags.comment:
        id3.add(COMM(encoding=3, lang="eng", desc="", text=[tags.comment]))
    id3.delall("USLT")
    if tags.lyrics:
        id3.add(USLT(encoding=3, lang=_id3_language(tags.language), desc="", text=tags.lyrics))
    id3.delall("APIC")
    cover = _cover(tags)
    if cover is not None:
        data, mime = cover
        id3.add(APIC(encoding=3, mime=mime, type=PictureType.COVER_FRONT, desc="", data=data))


def _set_id3_text(id3: Any, name: str, value: str | None) -> None:
    """A text frame by its name (TIT3), or a TXXX frame by its description (TXXX:SERIES)."""
    id3.delall(name)
    if not value:
        return
    if name.startswith("TXXX:"):
        id3.add(TXXX(encoding=3, desc=name.removeprefix("TXXX:"), text=[value]))
    else:
        id3.add(Frames[name](encoding=3, text=[value]))


def _id3_language(language: str | None) -> str:
    """USLT's language is three letters of ISO 639-2; "und" (undetermined) when not known."""
    if language and len(language) == 3 and language.isascii() and language.isalpha():
        return language.lower()
    return "und"


def _pair(value: tuple[int, int] | None) -> str | None:
    return None if value is None else f"{value[0]}/{value[1]}"


def _write_mp3(path: Path, tags: Tags) -> None:
    try:
        id3 = ID3(path)
    except ID3NoHeaderError:
        id3 = ID3()
    _fill_id3(id3, tags)
    id3.save(path, v2_version=4)


def _write_wav(path: Path, tags: Tags) -> None:
    wave = WAVE(path)
    if wave.tags is None:
        wave.add_tags()
    _fill_id3(wave.tags, tags)
    wave.save(v2_version=4)


# --- MP4 / M4B -------------------------------------------------------------------------------


def _freeform(value: str) -> list[MP4FreeForm]:
    return [MP4FreeForm(value.encode("utf-8"))]


def _write_mp4(path: Path, tags: Tags, *, audiobook: bool) -> None:
    mp4 = MP4(path)
    if mp4.tags is None:
        mp4.add_tags()
    atoms: Any = mp4.tags
    composer, displaced = _composer_fields(tags)
    values: dict[str, Any] = {
        "\xa9nam": tags.title,
        "\xa9alb": tags.album,
        "\xa9ART": tags.artist,
        "aART": tags.album_artist,
        "\xa9wrt": composer,
        "\xa9gen": tags.genre,
        "\xa9day": None if tags.year is None else str(tags.year),
        "desc": tags.description,
        "\xa9cmt": tags.comment,
        "\xa9lyr": tags.lyrics,
        "trkn": None if tags.track is None else [tags.track],
        "disk": None if tags.disc is None else [tags.disc],
        "stik": [_STIK_AUDIOBOOK] if audiobook else None,
        _ITUNES + "NARRATOR": tags.narrator and _freeform(tags.narrator),
        _ITUNES + "LANGUAGE": tags.language and _freeform(tags.language),
        _ITUNES + "COMPOSER": displaced and _freeform(displaced),
        _ITUNES + ORIGIN_TAG: tags.origin and _freeform(tags.origin),
    }
    for book_field in BOOK_FIELDS:
        value = getattr(tags, book_field.attr)
        values[_ITUNES + book_field.mp4] = value and _freeform(value)
    for name, value in replaygain_fields(tags.replaygain).items():
        # foobar2000's and most players' spelling in MP4: lower case
        values[_ITUNES + name.lower()] = value and _freeform(value)
    cover = _cover(tags)
    if cover is not None:
        data, mime = cover
        kind = MP4Cover.FORMAT_PNG if mime == "image/png" else MP4Cover.FORMAT_JPEG
        values["covr"] = [MP4Cover(data, imageformat=kind)]
    else:
        values["covr"] = None
    for name, value in values.items():
        if value:
            atoms[name] = value
        else:
            atoms.pop(name, None)
    mp4.save()


# --- Vorbis comments (FLAC and Opus) ---------------------------------------------------------


def _vorbis_fields(tags: Tags, *, opus: bool = False) -> dict[str, str | None]:
    composer, displaced = _composer_fields(tags)
    gains = _r128_fields(tags.replaygain) if opus else replaygain_fields(tags.replaygain)
    return {
        **gains,
        "TITLE": tags.title,
        "ALBUM": tags.album,
        "ARTIST": tags.artist,
        "ALBUMARTIST": tags.album_artist,
        "COMPOSER": composer,
        "SONGBATCH_COMPOSER": displaced,
        "NARRATOR": tags.narrator,
        "PERFORMER": tags.narrator,
        "TRACKNUMBER": None if tags.track is None else str(tags.track[0]),
        "TRACKTOTAL": None if tags.track is None else str(tags.track[1]),
        "DISCNUMBER": None if tags.disc is None else str(tags.disc[0]),
        "DISCTOTAL": None if tags.disc is None else str(tags.disc[1]),
        "GENRE": tags.genre,
        "DATE": None if tags.year is None else str(tags.year),
        "LANGUAGE": tags.language,
        "DESCRIPTION": tags.description,
        "COMMENT": tags.comment,
        "LYRICS": tags.lyrics,
        ORIGIN_TAG: tags.origin,
        **{field.vorbis: getattr(tags, field.attr) for field in BOOK_FIELDS},
    }


def _r128_fields(gain: ReplayGain | None) -> dict[str, str | None]:
    """Opus's own gain tags (RFC 7845), which Opus players read instead of REPLAYGAIN_*."""
    album = None if gain is None else gain.album_gain_db
    return {
        "R128_TRACK_GAIN": None if gain is None else r128_gain(gain.track_gain_db),
        "R128_ALBUM_GAIN": None if album is None else r128_gain(album),
    }


def _fill_vorbis(comments: Any, tags: Tags, *, opus: bool = False) -> None:
    for name, value in _vorbis_fields(tags, opus=opus).items():
        if name in comments:
            del comments[name]
        if value:
            comments[name] = [value]


def _picture(tags: Tags) -> Picture | None:
    cover = _cover(tags)
    if cover is None:
        return None
    picture = Picture()
    picture.type = PictureType.COVER_FRONT
    picture.data, picture.mime = cover
    picture.width, picture.height, picture.depth, picture.colors = picture_geometry(picture.data)
    return picture


# PNG colour type -> samples per pixel (greyscale, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def picture_geometry(data: bytes) -> tuple[int, int, int, int]:
    """(width, height, bits per pixel, colours in the palette or 0) of a JPEG or PNG, as a FLAC
    PICTURE block records them. Covers are decoded in full at plan time, so one that Pillow
    cannot read here is not one songbatch stored: it gets 0s, which the format reads as unknown."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            bands = len(image.getbands())
            palette = image.palette
            colors = len(palette.colors) if image.mode == "P" and palette is not None else 0
    except (OSError, ValueError, PIL.Image.DecompressionBombError):
        return 0, 0, 0, 0
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 26:
        # Pillow reads 16-bit RGB as 8-bit: the header says what the file holds.
        bit_depth, colour_type = struct.unpack(">BB", data[24:26])
        if colour_type == 3:
            return width, height, 24, colors  # palette entries are 8-bit RGB, whatever the index
        return width, height, bit_depth * _PNG_CHANNELS.get(colour_type, bands), 0
    return width, height, 8 * bands, colors


def _write_flac(path: Path, tags: Tags) -> None:
    flac = FLAC(path)
    if flac.tags is None:
        flac.add_tags()
    _fill_vorbis(flac.tags, tags)
    flac.clear_pictures()
    picture = _picture(tags)
    if picture is not None:
        flac.add_picture(picture)
    flac.save()


def _write_opus(path: Path, tags: Tags) -> None:
    opus = OggOpus(path)
    comments: Any = opus.tags
    _fill_vorbis(comments, tags, opus=True)
    if "METADATA_BLOCK_PICTURE" in comments:
        del comments["METADATA_BLOCK_PICTURE"]
    picture = _picture(tags)
    if picture is not None:
        encoded = base64.b64encode(picture.write()).decode("ascii")
        comments["METADATA_BLOCK_PICTURE"] = [encoded]
    opus.save()


def set_vorbis_comments(target: Path | io.BytesIO, comments: Mapping[str, str]) -> None:
    """Set Vorbis comments in a FLAC file, or a FLAC file's bytes in memory (chunk files carry
    their job key and their power this way)."""
    if isinstance(target, io.BytesIO):
        target.seek(0)
    flac = FLAC(target)
    if flac.tags is None:
        flac.add_tags()
    tags: Any = flac.tags
    for name, value in comments.items():
        tags[name] = [value]
    if isinstance(target, io.BytesIO):
        target.seek(0)
        flac.save(target)
    else:
        flac.save()


def vorbis_comment(path: Path, name: str) -> list[str]:
    """The values of one Vorbis comment of a FLAC file (a chunk's job key)."""
    return flac_header(path, name).comment


@dataclass(frozen=True)
class FlacHeader:
    sample_rate: int
    channels: int
    frames: int
    comment: list[str]  # the values of the one Vorbis comment asked for


def flac_header(path: Path, comment: str) -> FlacHeader:
    """A FLAC file's stream info and one Vorbis comment, from one read of its header."""
    flac = FLAC(path)
    tags = flac.tags
    values = [] if tags is None else [str(value) for value in tags.get(comment, [])]  # type: ignore[union-attr]
    info = flac.info
    return FlacHeader(int(info.sample_rate), int(info.channels), int(info.total_samples), values)


# --- Reading back ----------------------------------------------------------------------------


def read_tags(path: Path) -> Tags:
    """Read what `write_tags` wrote; the format is sniffed from the file's content."""
    audio = mutagen.File(path)
    if isinstance(audio, MP4):
        return _read_mp4(audio)
    if isinstance(audio, FLAC):
        return _read_flac(audio)
    if isinstance(audio, OggOpus):
        return _read_opus(audio)
    if isinstance(audio, (MP3, WAVE)) and audio.tags is not None:
        return _read_id3(audio.tags)
    raise InputError(f"{path}: no tags that songbatch can read")


def read_origin(path: Path) -> str | None:
    """The SONGBATCH_OUTPUT tag of any file, or None (not ours, or not audio at all)."""
    try:
        audio = mutagen.File(path)
    except Exception:  # mutagen raises many types on files it half-recognises
        return None
    if audio is None or audio.tags is None:
        return None
    if isinstance(audio, MP4):
        return _first(audio.tags.get(_ITUNES + ORIGIN_TAG))
    if isinstance(audio, (FLAC, OggOpus)):
        return _first(audio.tags.get(ORIGIN_TAG))
    if isinstance(audio, (MP3, WAVE)):
        frame = audio.tags.get(f"TXXX:{ORIGIN_TAG}")
        return None if frame is None else _first(frame.text)
    return None


def _first(values: Any) -> str | None:
    if not values:
        return None
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _int_or_none(value: str | None) -> int | None:
    try:
        return None if value is None else int(value.split("-")[0])
    except ValueError:
        return None


def _split_composer(
    composer: str | None, narrator: str | None, displaced: str | None
) -> str | None:
    """Undo `_composer_fields`: the composer tag holds the narrator when one is set."""
    if displaced:
        return displaced
    return None if composer == narrator else composer


def _read_id3(id3: Any) -> Tags:
    def text(name: str) -> str | None:
        frame = id3.get(name)
        return None if frame is None else _first(frame.text)

    comments = [f for f in id3.getall("COMM") if f.desc == ""]
    lyrics = [f for f in id3.getall("USLT") if f.desc == ""]
    pictures = id3.getall("APIC")
    narrator = text("TXXX:NARRATOR")
    return _with_book_fields(
        Tags(
            title=text("TIT2") or "",
            album=text("TALB"),
            artist=text("TPE1"),
            album_artist=text("TPE2"),
            narrator=narrator,
            composer=_split_composer(text("TCOM"), narrator, text("TXXX:COMPOSER")),
            track=_parse_pair(text("TRCK")),
            disc=_parse_pair(text("TPOS")),
            genre=text("TCON"),
            year=_int_or_none(text("TDRC")),
            language=text("TLAN"),
            description=text("TXXX:DESCRIPTION"),
            comment=_first(comments[0].text) if comments else None,
            lyrics=str(lyrics[0].text) if lyrics else None,
            cover_bytes=bytes(pictures[0].data) if pictures else None,
        ),
        lambda field: text(field.id3),
        lambda name: text(f"TXXX:{name}"),
    )


def _with_book_fields(
    tags: Tags,
    read: Callable[[BookField], str | None],
    gains: Callable[[str], str | None],
) -> Tags:
    """`tags` with the publishing fields and the ReplayGain values the readers found."""
    for book_field in BOOK_FIELDS:
        setattr(tags, book_field.attr, read(book_field))
    tags.replaygain = _parse_replaygain(gains)
    return tags


def _parse_pair(value: str | None) -> tuple[int, int] | None:
    if not value or "/" not in value:
        return None
    number, total = value.split("/", 1)
    return int(number), int(total)


def _read_mp4(mp4: Any) -> Tags:
    atoms = mp4.tags or {}

    def text(name: str) -> str | None:
        return _first(atoms.get(name))

    def pair(name: str) -> tuple[int, int] | None:
        values = atoms.get(name)
        return (int(values[0][0]), int(values[0][1])) if values else None

    narrator = text(_ITUNES + "NARRATOR")
    covers = atoms.get("covr")
    return _with_book_fields(
        Tags(
            title=text("\xa9nam") or "",
            album=text("\xa9alb"),
            artist=text("\xa9ART"),
            album_artist=text("aART"),
            narrator=narrator,
            composer=_split_composer(text("\xa9wrt"), narrator, text(_ITUNES + "COMPOSER")),
            track=pair("trkn"),
            disc=pair("disk"),
            genre=text("\xa9gen"),
            year=_int_or_none(text("\xa9day")),
            language=text(_ITUNES + "LANGUAGE"),
            description=text("desc"),
            comment=text("\xa9cmt"),
            lyrics=text("\xa9lyr"),
            cover_bytes=bytes(covers[0]) if covers else None,
        ),
        lambda field: text(_ITUNES + field.mp4),
        lambda name: text(_ITUNES + name.lower()),
    )


def _read_vorbis(comments: Any, cover_bytes: bytes | None) -> Tags:
    def text(name: str) -> str | None:
        return _first(comments.get(name)) if comments is not None else None

    def pair(number: str, total: str) -> tuple[int, int] | None:
        n, t = _int_or_none(text(number)), _int_or_none(text(total))
        return None if n is None or t is None else (n, t)

    narrator = text("NARRATOR")
    return _with_book_fields(
        Tags(
            title=text("TITLE") or "",
            album=text("ALBUM"),
            artist=text("ARTIST"),
            album_artist=text("ALBUMARTIST"),
            narrator=narrator,
            composer=_split_composer(text("COMPOSER"), narrator, text("SONGBATCH_COMPOSER")),
            track=pair("TRACKNUMBER", "TRACKTOTAL"),
            disc=pair("DISCNUMBER", "DISCTOTAL"),
            genre=text("GENRE"),
            year=_int_or_none(text("DATE")),
            language=text("LANGUAGE"),
            description=text("DESCRIPTION"),
            comment=text("COMMENT"),
            lyrics=text("LYRICS"),
            cover_bytes=cover_bytes,
        ),
        lambda field: text(field.vorbis),
        text,
    )


def _read_flac(flac: Any) -> Tags:
    pictures = flac.pictures
    return _read_vorbis(flac.tags, bytes(pictures[0].data) if pictures else None)


def _read_opus(opus: Any) -> Tags:
    encoded = opus.tags.get("METADATA_BLOCK_PICTURE") if opus.tags is not None else None
    cover = Picture(base64.b64decode(encoded[0])).data if encoded else None
    return _read_vorbis(opus.tags, None if cover is None else bytes(cover))


def read_chapters(path: Path) -> list[tuple[str, int]]:
    """(title, start_ms) of each chapter of an MP4/M4B file (its Nero `chpl` list), or of an
    MP3 (its ID3 CHAP frames, see `read_mp3_chapters`)."""
    if isinstance(mutagen.File(path), MP3):
        return [(title, start) for title, start, _end in read_mp3_chapters(path)]
    chapters = MP4(path).chapters
    if chapters is None:
        return []
    return [(chapter.title, round(chapter.start * 1000)) for chapter in chapters]


def read_mp3_chapters(path: Path) -> list[tuple[str, int, int]]:
    """(title, start_ms, end_ms) of each chapter of an MP3: the CHAP frames in the order the
    top-level CTOC lists them (ID3v2 chapters, as `audio.encode` writes them), else in start
    order; a CHAP without a TIT2 sub-frame has the title ""."""
    try:
        id3 = ID3(path)
    except ID3NoHeaderError:
        return []
    chaps = {frame.element_id: frame for frame in id3.getall("CHAP")}
    tocs = [toc for toc in id3.getall("CTOC") if toc.flags & CTOCFlags.TOP_LEVEL]
    if tocs:
        order = [chaps[child] for child in tocs[0].child_element_ids if child in chaps]
    else:
        order = sorted(chaps.values(), key=lambda frame: frame.start_time)
    return [(_chap_title(frame), frame.start_time, frame.end_time) for frame in order]


def _chap_title(frame: Any) -> str:
    title = frame.sub_frames.get("TIT2")
    return "" if title is None else str(_first(title.text) or "")
