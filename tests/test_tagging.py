"""Tags as players and audiobook servers read them, checked with mutagen directly."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

import mutagen
import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, Picture
from mutagen.mp4 import MP4
from mutagen.oggopus import OggOpus

from songbatch.audio import FORMATS, Format, encode
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


def composer_tag(path: Path) -> str:
    """The composer field, where Audiobookshelf's scanner looks for the narrator."""
    audio = mutagen.File(path)
    if isinstance(audio, MP4):
        return str(audio.tags["\xa9wrt"][0])
    if isinstance(audio, (FLAC, OggOpus)):
        return str(audio.tags["COMPOSER"][0])
    return str(audio.tags["TCOM"])
