"""Tags as players and audiobook servers read them, checked with mutagen directly."""

from __future__ import annotations

import base64
import io
import json
import shutil
from pathlib import Path
from typing import Any

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus
from PIL import Image
from typer.testing import CliRunner

from helpers.books import synthetic_profile
from songbatch import tagging
from songbatch.audio import FORMATS, Format, encode
from songbatch.cli.main import app
from songbatch.errors import InputError
from songbatch.tagging import Tags, cover_mime, read_chapters, read_tags, write_tags

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(range(64))  # header is all players sniff


@pytest.fixture(scope="module")
def plain_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One untagged half-second file per format."""
    root = tmp_path_factory.mktemp("plain")
    master = root / "master.flac"
    t = np.arange(11025) / 22050
    sf.write(master, (0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32), 22050, "PCM_24")
    files = {}
    for fmt in FORMATS:
        files[fmt] = root / f"plain.{fmt}"
        encode([master], files[fmt], fmt, tags=Tags(title="plain"))
    return files


@pytest.fixture
def jpeg(tmp_path: Path) -> Path:
    path = tmp_path / "cover.jpg"
    path.write_bytes(JPEG)
    return path


def fresh(plain_files: dict[str, Path], fmt: str, tmp_path: Path) -> Path:
    path = tmp_path / f"file.{fmt}"
    shutil.copyfile(plain_files[fmt], path)
    return path


def test_cover_mime_from_magic_bytes() -> None:
    assert cover_mime(JPEG) == "image/jpeg"
    assert cover_mime(b"\x89PNG\r\n\x1a\n....") == "image/png"
    with pytest.raises(InputError):
        cover_mime(b"GIF89a....")


def test_non_image_cover_is_an_input_error(plain_files: dict[str, Path], tmp_path: Path) -> None:
    bad = tmp_path / "cover.gif"
    bad.write_bytes(b"GIF89a" + bytes(32))
    with pytest.raises(InputError, match=r"cover\.gif"):
        write_tags(fresh(plain_files, "mp3", tmp_path), "mp3", Tags(title="t", cover=bad))


@pytest.mark.parametrize("fmt", FORMATS)
def test_narrator_only_goes_to_the_composer_tag(
    fmt: Format, plain_files: dict[str, Path], tmp_path: Path
) -> None:
    path = fresh(plain_files, fmt, tmp_path)
    write_tags(path, fmt, Tags(title="t", narrator="Nora Reader"))
    back = read_tags(path)
    assert (back.narrator, back.composer) == ("Nora Reader", None)
    assert composer_tag(path) == "Nora Reader"


@pytest.mark.parametrize("fmt", FORMATS)
def test_album_composer_without_narrator(
    fmt: Format, plain_files: dict[str, Path], tmp_path: Path
) -> None:
    path = fresh(plain_files, fmt, tmp_path)
    write_tags(path, fmt, Tags(title="t", composer="Clara Composer", track=(3, 9)))
    back = read_tags(path)
    assert (back.narrator, back.composer, back.track) == (None, "Clara Composer", (3, 9))
    assert composer_tag(path) == "Clara Composer"


@pytest.mark.parametrize("fmt", FORMATS)
def test_rewriting_replaces_every_field(
    fmt: Format, plain_files: dict[str, Path], tmp_path: Path, jpeg: Path
) -> None:
    path = fresh(plain_files, fmt, tmp_path)
    full = Tags(
        title="Old", album="A", artist="B", narrator="N", genre="G", year=1999,
        description="D", comment="C", language="eng", track=(1, 2), disc=(1, 1), cover=jpeg,
        lyrics="la la",
    )  # fmt: skip
    write_tags(path, fmt, full)
    assert read_tags(path).cover_bytes == JPEG
    write_tags(path, fmt, Tags(title="New"))
    assert read_tags(path) == Tags(title="New")


def test_id3_frames(plain_files: dict[str, Path], tmp_path: Path, jpeg: Path) -> None:
    path = fresh(plain_files, "mp3", tmp_path)
    tags = Tags(title="T", narrator="N", composer="C", track=(2, 10), disc=(1, 3), cover=jpeg)
    write_tags(path, "mp3", tags)
    id3 = mutagen.File(path).tags
    assert id3.version[:2] == (2, 4)
    assert str(id3["TCOM"]) == "N"
    assert str(id3["TXXX:NARRATOR"]) == "N"
    assert str(id3["TXXX:COMPOSER"]) == "C"
    assert str(id3["TRCK"]) == "2/10" and str(id3["TPOS"]) == "1/3"
    (apic,) = id3.getall("APIC")
    assert (apic.type, apic.mime, apic.data) == (3, "image/jpeg", JPEG)
    assert read_tags(path).composer == "C"


def test_mp4_atoms(plain_files: dict[str, Path], tmp_path: Path, jpeg: Path) -> None:
    path = fresh(plain_files, "m4b", tmp_path)
    write_tags(path, "m4b", Tags(title="T", narrator="N", language="deu", cover=jpeg))
    atoms = mutagen.File(path).tags
    assert atoms["stik"] == [2]
    assert atoms["\xa9wrt"] == ["N"]
    assert bytes(atoms["----:com.apple.iTunes:NARRATOR"][0]) == b"N"
    assert bytes(atoms["----:com.apple.iTunes:LANGUAGE"][0]) == b"deu"
    assert atoms["covr"][0].imageformat == 13  # JPEG
    # Plain m4a is not marked as an audiobook.
    write_tags(path, "m4a", Tags(title="T"))
    assert "stik" not in mutagen.File(path).tags


def test_vorbis_fields(plain_files: dict[str, Path], tmp_path: Path, jpeg: Path) -> None:
    flac_path = fresh(plain_files, "flac", tmp_path)
    tags = Tags(title="T", narrator="N", track=(4, 5), disc=(2, 2), year=2001, cover=jpeg)
    write_tags(flac_path, "flac", tags)
    flac = mutagen.File(flac_path)
    for name, value in {
        "NARRATOR": "N", "PERFORMER": "N", "COMPOSER": "N", "TRACKNUMBER": "4",
        "TRACKTOTAL": "5", "DISCNUMBER": "2", "DISCTOTAL": "2", "DATE": "2001",
    }.items():  # fmt: skip
        assert flac[name] == [value], name
    assert flac.pictures[0].type == 3 and flac.pictures[0].mime == "image/jpeg"

    opus_path = fresh(plain_files, "opus", tmp_path)
    write_tags(opus_path, "opus", tags)
    opus = mutagen.File(opus_path)
    picture = Picture(base64.b64decode(opus["METADATA_BLOCK_PICTURE"][0]))
    assert (picture.type, picture.data) == (3, JPEG)


def test_unknown_format_is_refused(plain_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_tags(fresh(plain_files, "flac", tmp_path), "aiff", Tags(title="t"))


def test_read_chapters_of_a_file_without_chapters(plain_files: dict[str, Path]) -> None:
    assert read_chapters(plain_files["m4b"]) == []


LYRICS = "Light on the water, light on the [stone],\nsomeone is keeping the lantern alone.\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_lyrics_round_trip(fmt: Format, plain_files: dict[str, Path], tmp_path: Path) -> None:
    path = fresh(plain_files, fmt, tmp_path)
    write_tags(path, fmt, Tags(title="t", lyrics=LYRICS))
    assert read_tags(path).lyrics == LYRICS
    assert lyrics_tag(path) == LYRICS
    write_tags(path, fmt, Tags(title="t"))
    assert read_tags(path).lyrics is None and lyrics_tag(path) is None


def test_uslt_language_is_the_tags_language_or_undetermined(
    plain_files: dict[str, Path], tmp_path: Path
) -> None:
    path = fresh(plain_files, "mp3", tmp_path)
    write_tags(path, "mp3", Tags(title="t", lyrics=LYRICS, language="deu"))
    assert mutagen.File(path).tags.getall("USLT")[0].lang == "deu"
    write_tags(path, "mp3", Tags(title="t", lyrics=LYRICS, language="en-GB"))
    assert mutagen.File(path).tags.getall("USLT")[0].lang == "und"


def lyrics_tag(path: Path) -> str | None:
    """The lyrics field where each format's players read it: USLT, \xa9lyr, LYRICS."""
    audio = mutagen.File(path)
    if isinstance(audio, MP4):
        values = audio.tags.get("\xa9lyr")
        return str(values[0]) if values else None
    if isinstance(audio, (FLAC, OggOpus)):
        values = audio.tags.get("LYRICS")
        return str(values[0]) if values else None
    frames = audio.tags.getall("USLT")
    return str(frames[0].text) if frames else None


def image_bytes(mode: str, size: tuple[int, int], fmt: str, **save: Any) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("mode", "fmt", "geometry"),
    [
        ("RGB", "JPEG", (37, 23, 24, 0)),
        ("L", "JPEG", (37, 23, 8, 0)),
        ("CMYK", "JPEG", (37, 23, 32, 0)),
        ("RGB", "PNG", (37, 23, 24, 0)),
        ("RGBA", "PNG", (37, 23, 32, 0)),
        ("LA", "PNG", (37, 23, 16, 0)),
        ("I;16", "PNG", (37, 23, 16, 0)),
    ],
)
def test_picture_geometry(mode: str, fmt: str, geometry: tuple[int, int, int, int]) -> None:
    assert tagging.picture_geometry(image_bytes(mode, (37, 23), fmt)) == geometry


def test_picture_geometry_of_a_palette_png_counts_its_colours() -> None:
    image = Image.new("RGB", (8, 4), "red")
    image.paste((0, 0, 255), (0, 0, 4, 4))
    buffer = io.BytesIO()
    image.convert("P", palette=Image.Palette.ADAPTIVE, colors=2).save(buffer, "PNG")
    width, height, depth, colors = tagging.picture_geometry(buffer.getvalue())
    assert (width, height, depth) == (8, 4, 24)
    assert colors == 2


@pytest.mark.parametrize("fmt", ["flac", "opus"])
def test_flac_and_ogg_pictures_carry_real_dimensions(
    fmt: Format, plain_files: dict[str, Path], tmp_path: Path
) -> None:
    cover = tmp_path / "cover.png"
    cover.write_bytes(image_bytes("RGBA", (64, 48), "PNG"))
    path = fresh(plain_files, fmt, tmp_path)
    write_tags(path, fmt, Tags(title="t", cover=cover))
    [picture] = pictures(path)
    assert (picture.width, picture.height, picture.depth, picture.colors) == (64, 48, 32, 0)
    assert picture.mime == "image/png"


def pictures(path: Path) -> list[Picture]:
    audio = mutagen.File(path)
    if isinstance(audio, FLAC):
        return list(audio.pictures)
    return [Picture(base64.b64decode(b)) for b in audio.tags.get("METADATA_BLOCK_PICTURE", [])]


def test_an_album_rendered_through_the_cli_has_lyrics_and_cover_dimensions(
    tmp_path: Path,
) -> None:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    Image.new("RGB", (40, 30), "teal").save(tmp_path / "cover.jpg", "JPEG")
    manifest = tmp_path / "album.yaml"
    manifest.write_text(
        "kind: album\n"
        "title: Harbour Lights\n"
        "artist: Tester\n"
        "profile: synthetic.yaml\n"
        "cover: cover.jpg\n"
        "formats: [flac, mp3, opus, wav]\n"
        "tracks:\n"
        "  - title: Lantern Song\n"
        "    prompt: warm folk\n"
        "    duration: 1\n"
        f"    lyrics: {json.dumps(LYRICS)}\n"
        "  - title: Low Tide\n"
        "    prompt: calm piano\n"
        "    duration: 1\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app, ["render", str(manifest), "--workspace", str(tmp_path)], catch_exceptions=False
    )
    assert result.exit_code == 0, result.output
    folder = tmp_path / "outputs" / "harbour-lights"
    for fmt in ("flac", "mp3", "opus", "wav"):
        [song] = folder.glob(f"*Lantern Song.{fmt}")
        [instrumental] = folder.glob(f"*Low Tide.{fmt}")
        assert lyrics_tag(song) == LYRICS, fmt
        assert read_tags(song).lyrics == LYRICS, fmt
        assert lyrics_tag(instrumental) is None, fmt
    for fmt in ("flac", "opus"):
        [song] = folder.glob(f"*Lantern Song.{fmt}")
        [picture] = pictures(song)
        assert (picture.width, picture.height, picture.depth) == (40, 30, 24), fmt


def composer_tag(path: Path) -> str:
    """The composer field, where Audiobookshelf's scanner looks for the narrator."""
    audio = mutagen.File(path)
    if isinstance(audio, MP4):
        return str(audio.tags["\xa9wrt"][0])
    if isinstance(audio, (FLAC, OggOpus)):
        return str(audio.tags["COMPOSER"][0])
    return str(audio.tags["TCOM"])
