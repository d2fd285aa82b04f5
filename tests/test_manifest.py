"""Manifests: the shipped examples, effective values, file names, and the bad-input corpus."""

from __future__ import annotations

import hashlib
import os
import shutil
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from songbatch.errors import ManifestError
from songbatch.manifest import (
    Album,
    Audiobook,
    load_manifest,
    parse_seconds,
    safe_filename,
    slugify,
)
from songbatch.yamlstrict import load_yaml

REPO = Path(__file__).resolve().parents[1]
BAD_INPUTS = Path(__file__).resolve().parent / "bad_inputs"
CASES: list[dict[str, Any]] = load_yaml(BAD_INPUTS / "cases.yaml").data["cases"]

BOOK_HEAD = "kind: audiobook\ntitle: Test Book\nauthor: Tester\n"


def write(folder: Path, text: str, name: str = "book.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def book(tmp_path: Path, body: str) -> Audiobook:
    manifest = load_manifest(write(tmp_path, BOOK_HEAD + body)).manifest
    assert isinstance(manifest, Audiobook)
    return manifest


def album(tmp_path: Path, body: str) -> Album:
    head = "kind: album\ntitle: Test Album\nartist: Tester\n"
    manifest = load_manifest(write(tmp_path, head + body, "album.yaml")).manifest
    assert isinstance(manifest, Album)
    return manifest


# --- the shipped examples -----------------------------------------------------------------


def test_example_book_loads() -> None:
    loaded = load_manifest(REPO / "manifests" / "example-book.yaml")
    book = loaded.manifest
    assert isinstance(book, Audiobook)
    assert loaded.path.is_absolute() and loaded.slug == "the-lighthouse-keeper-s-almanac"
    assert loaded.source_sha256 == hashlib.sha256(loaded.path.read_bytes()).hexdigest()
    assert book.profile == "offline" and book.formats == ["m4b", "mp3"]
    assert len(book.chapters) == 3
    assert [c.text_file is None for c in book.chapters] == [True, False, False]
    assert all(0 < len(c.text) < 800 for c in book.chapters)
    assert book.cover is not None and book.cover.is_absolute()
    assert book.voice.reference is not None and book.voice.reference.is_file()
    assert [c.file for c in book.chapters] == ["01 - The Lamp", "02 - The Storm", "03 - The Letter"]


def test_example_album_loads() -> None:
    loaded = load_manifest(REPO / "manifests" / "example-album.yaml")
    album = loaded.manifest
    assert isinstance(album, Album)
    assert album.formats == ["mp3", "flac"] and album.cover is not None
    assert len(album.tracks) == 2 and all(20 <= t.duration <= 30 for t in album.tracks)
    assert sum(t.lyrics is not None for t in album.tracks) == 1


def test_example_binaries_are_small() -> None:
    for path in (REPO / "manifests").rglob("*"):
        if path.suffix in {".wav", ".png", ".jpg"}:
            assert path.stat().st_size < 50_000, path


# --- effective values -----------------------------------------------------------------------


def test_voice_pauses_and_seed_are_merged_per_chapter(tmp_path: Path) -> None:
    clip = tmp_path / "voices" / "narrator.wav"
    clip.parent.mkdir()
    soundfile.write(clip, np.zeros(2400, dtype=np.float32), 24000)
    other = tmp_path / "other.flac"
    soundfile.write(other, np.zeros(2400, dtype=np.float32), 24000)
    result = book(
        tmp_path,
        "seed: 9\nvoice:\n  reference: voices/narrator.wav\n"
        "  params: {exaggeration: 0.5, rate: 1}\n"
        "pauses: {sentence: 400ms, paragraph: 1.5s}\n"
        "chapters:\n"
        "  - title: One\n    text: Hello.\n"
        "  - title: Two\n    text: Again.\n    seed: 3\n    pauses: {paragraph: 2}\n"
        "    voice:\n      reference: other.flac\n      params: {exaggeration: 0.9, pitch: 40}\n",
    )
    one, two = result.chapters
    assert one.voice.reference == clip.resolve() and one.seed == 9
    assert one.voice.params == {"exaggeration": 0.5, "rate": 1}
    assert (one.pauses.sentence, one.pauses.paragraph, one.pauses.chapter) == (0.4, 1.5, 2.0)
    assert two.voice.reference == other.resolve() and two.seed == 3
    assert two.voice.params == {"exaggeration": 0.9, "rate": 1, "pitch": 40}
    assert (two.pauses.sentence, two.pauses.paragraph, two.pauses.chapter) == (0.4, 2.0, 2.0)
    assert (one.line, two.line) == (10, 12)


def test_defaults(tmp_path: Path) -> None:
    result = book(tmp_path, "chapters:\n  - title: One\n    text: Hello.\n")
    assert result.language == "en" and result.speak_titles is True and result.seed == 0
    assert result.formats == ["m4b", "mp3"] and result.voice.reference is None
    assert (result.pauses.sentence, result.pauses.paragraph, result.pauses.chapter) == (
        0.35,
        0.9,
        2.0,
    )
    assert result.output is None and result.profile is None


def test_output_is_relative_to_the_manifest(tmp_path: Path) -> None:
    result = book(tmp_path, "output: out/here\nchapters:\n  - title: One\n    text: Hi.\n")
    assert result.output == (tmp_path / "out" / "here").resolve()


def test_track_params_seed_and_durations(tmp_path: Path) -> None:
    (tmp_path / "words.txt").write_text("la la\n", encoding="utf-8")
    result = album(
        tmp_path,
        "seed: 4\nparams: {guidance_scale: 3, top_k: 250}\nformats: [flac, opus, wav]\ntracks:\n"
        "  - {title: A, prompt: p, duration: 3m30s}\n"
        "  - {title: B, prompt: p, duration: 90s, seed: 1, params: {top_k: 100}}\n"
        "  - {title: C, prompt: p, duration: 2m, lyrics_file: words.txt}\n"
        "  - {title: D, prompt: p, duration: 210.5, file: custom}\n",
    )
    a, b, c, d = result.tracks
    assert [t.duration for t in result.tracks] == [210.0, 90.0, 120.0, 210.5]
    assert a.seed == 4 and b.seed == 1
    assert a.params == {"guidance_scale": 3, "top_k": 250}
    assert b.params == {"guidance_scale": 3, "top_k": 100}
    assert c.lyrics == "la la\n" and c.lyrics_file == (tmp_path / "words.txt").resolve()
    assert d.file == "custom" and a.file == "01 - A"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (210, 210.0),
        (210.5, 210.5),
        ("210", 210.0),
        ("3m30s", 210.0),
        ("90s", 90.0),
        ("2m", 120.0),
        ("400ms", 0.4),
        ("1.5s", 1.5),
        ("1h", 3600.0),
        ("1m 30s", 90.0),
    ],
)
def test_parse_seconds(value: Any, seconds: float) -> None:
    assert parse_seconds(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "3 minutes", "1:30", "m", "-5s", True, None, [1]])
def test_parse_seconds_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_seconds(value)


@pytest.mark.parametrize("duration", ["0", "0s", "3601", "2h"])
def test_track_duration_range(tmp_path: Path, duration: str) -> None:
    with pytest.raises(ManifestError, match="duration must be more than 0 and at most 3600"):
        album(tmp_path, f"tracks:\n  - {{title: A, prompt: p, duration: {duration}}}\n")


def test_bom_and_crlf_text_files_equal_the_clean_text(tmp_path: Path) -> None:
    clean = "First paragraph, line one.\nLine two.\n\nSecond paragraph: café.\n"
    (tmp_path / "clean.txt").write_bytes(clean.encode("utf-8"))
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + clean.encode("utf-8"))
    (tmp_path / "crlf.txt").write_bytes(clean.replace("\n", "\r\n").encode("utf-8"))
    (tmp_path / "cr.txt").write_bytes(b"\xef\xbb\xbf" + clean.replace("\n", "\r").encode("utf-8"))
    result = book(
        tmp_path,
        "chapters:\n"
        + "".join(
            f"  - title: {n}\n    text_file: {n}.txt\n" for n in ("clean", "bom", "crlf", "cr")
        ),
    )
    assert [c.text for c in result.chapters] == [clean] * 4


def test_duplicate_titles_are_fine(tmp_path: Path) -> None:
    result = book(
        tmp_path, "chapters:\n  - {title: Interlude, text: a}\n  - {title: Interlude, text: b}\n"
    )
    assert [c.file for c in result.chapters] == ["01 - Interlude", "02 - Interlude"]


def test_permission_error_is_a_manifest_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Root can read chmod-000 files, so the corpus case may skip; this covers the branch anyway.
    manifest = write(tmp_path, BOOK_HEAD + "chapters:\n  - title: One\n    text_file: one.txt\n")
    (tmp_path / "one.txt").write_text("Hello.\n", encoding="utf-8")
    real = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "one.txt":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    with pytest.raises(ManifestError) as info:
        load_manifest(manifest)
    assert (info.value.line, info.value.col) == (6, 16)
    assert "Permission denied" in info.value.message


# --- safe names -----------------------------------------------------------------------------

RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10))}
RESERVED |= {f"LPT{i}" for i in range(1, 10)}


def assert_safe(stem: str) -> None:
    assert stem and len(stem.encode("utf-8")) <= 120
    assert not set('/\\:*?"<>|') & set(stem)
    assert not any(unicodedata.category(ch) in ("Cc", "Cf") for ch in stem)
    assert stem == stem.strip(" .") and "  " not in stem
    assert stem.split(".")[0].rstrip(" ").upper() not in RESERVED
    assert unicodedata.is_normalized("NFC", stem)


def test_hostile_titles_load_with_safe_file_names(tmp_path: Path) -> None:
    long_title = "ä" * 150  # 300 UTF-8 bytes
    result = book(
        tmp_path,
        "chapters:\n"
        "  - title: '/:*?\"<>|'\n    text: a\n"
        '  - title: "🎧 Intro 🎵"\n    text: b\n'
        '  - title: "שלום \\u202Eevil\\u202C עולם"\n    text: c\n'
        f"  - title: {long_title}\n    text: d\n"
        "  - title: CON\n    text: e\n"
        "  - title: Reserved\n    text: f\n    file: con.txt\n"
        "  - title: Dots\n    text: g\n    file: ' ..hidden. '\n",
    )
    stems = [c.file for c in result.chapters]
    for stem in stems:
        assert_safe(stem)
    assert stems[0].startswith("01 -")
    assert "שלום" in stems[2] and "\u202e" not in stems[2]
    assert stems[3].startswith("04 - ää") and len(stems[3].encode()) <= 120
    assert stems[4] == "05 - CON"
    assert stems[5] == "con_.txt" and stems[6] == "hidden"
    assert result.chapters[0].title == '/:*?"<>|'  # the title itself is kept for tags


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Part 1: The Start", "Part 1 - The Start"),
        ("a/b\\c|d", "a-b-c-d"),
        ("  spaced\t\nout  ", "spaced out"),
        ("CON", "CON_"),
        ("lpt9.mp3", "lpt9_.mp3"),
        ("nul .txt", "nul_ .txt"),
        ("...", "untitled"),
        ("", "untitled"),
        ("\u202e\u200b", "untitled"),
        ("e\u0301cole", "\u00e9cole"),  # NFC
        ("مرحبا", "مرحبا"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name) == expected


def test_safe_filename_truncates_at_a_character_boundary() -> None:
    stem = safe_filename("€" * 100, max_bytes=40)  # 3 bytes each
    assert stem == "€" * 13
    assert_safe(safe_filename("x" * 500))


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("The Lighthouse Keeper's Almanac", "the-lighthouse-keeper-s-almanac"),
        ("Café Société", "café-société"),
        ("שלום עליכם", "שלום-עליכם"),
        ("三体", "三体"),
        ("Война и мир", "война-и-мир"),
        ("الأمير الصغير", "الأمير-الصغير"),
        ("Ｆｕｌｌ ｗｉｄｔｈ", "full-width"),
        ("e\u0301tude", "étude"),  # one NFC form whatever the title's
        ("CON", "con_"),
        ("---", "untitled"),
        ("😀 🎧", "untitled"),
        ("a" * 100, "a" * 96),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert slugify(title) == slug
    assert_safe(slug)


def test_slugify_truncates_at_a_character_boundary() -> None:
    slug = slugify("書" * 100)
    assert len(slug.encode("utf-8")) <= 96 and slug == "書" * 32


# --- the bad-input corpus -------------------------------------------------------------------


def test_corpus_table_matches_folders() -> None:
    folders = {p.name for p in BAD_INPUTS.iterdir() if p.is_dir()}
    names = [c["case"] for c in CASES]
    assert len(names) == len(set(names)) >= 28
    assert folders == set(names)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_input(case: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / case["case"]
    shutil.copytree(BAD_INPUTS / case["case"], folder)
    if case.get("unreadable"):
        locked = folder / case["unreadable"]
        locked.chmod(0)
        if os.access(locked, os.R_OK):
            pytest.skip("running as root: chmod 000 does not stop reads")
    with pytest.raises(ManifestError) as info:
        load_manifest(folder / "manifest.yaml")
    err = info.value
    assert case["message"] in err.message
    assert (err.line, err.col, err.field) == (case["line"], case["col"], case["field"])
    assert err.file == folder / "manifest.yaml"
    text = str(err)
    assert "\n" not in text and "\r" not in text
    assert text.startswith(f"{folder / 'manifest.yaml'}:{case['line']}:{case['col']}: ")
