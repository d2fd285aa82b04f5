"""A book's publishing fields (subtitle, publisher, series and its part, ISBN, ASIN) from the
manifest into every format, read back two ways: by songbatch's own reader (mutagen) and as
ffmpeg names them, which is what ffprobe, and so Audiobookshelf, sees (its prober looks each
up under a few names, case-blind: server/utils/prober.js)."""

from __future__ import annotations

import dataclasses
import re
import subprocess
from pathlib import Path

import pytest

from helpers.examples import BOOK_DIR, example_book, render_offline
from songbatch.ffmpeg import ffmpeg_exe
from songbatch.tagging import BOOK_FIELDS, PUBLISHING_TAGS, Tags, read_tags

PUBLISHING = """subtitle: A Year at the Light
publisher: Example Press
series: Lights of the North
series_part: 2
isbn: 978-0-306-40615-7
asin: B0EXAMPLE1
"""
# What each field is worth, and the names Audiobookshelf reads it under (case-blind).
EXPECTED = {
    "subtitle": ("A Year at the Light", {"subtitle", "tit3", "tt3"}),
    "publisher": ("Example Press", {"publisher", "tpub", "tpb"}),
    "series": ("Lights of the North", {"series"}),
    "series_part": ("2", {"series-part"}),
    "isbn": ("9780306406157", {"isbn"}),
    "asin": ("B0EXAMPLE1", {"asin"}),
}


def test_the_tagger_places_and_carries_every_publishing_field() -> None:
    """A publishing field the manifest and the spec learn (assemblyspec.Publishing) must have
    its place in every format (BOOK_FIELDS) and a Tags attribute, or files would go without."""
    assert sorted(item.attr for item in BOOK_FIELDS) == sorted(PUBLISHING_TAGS)
    assert set(PUBLISHING_TAGS) <= {item.name for item in dataclasses.fields(Tags)}
    assert set(PUBLISHING_TAGS) == set(EXPECTED)


def book(workspace: Path, extra: str) -> Path:
    """The example book in every format that carries these tags, `extra` (whole lines) added."""
    return example_book(workspace, formats="[m4b, mp3, flac, opus]", extra="\n" + extra)


def ffmpeg_tags(path: Path) -> dict[str, str]:
    """The file's metadata as ffmpeg (and ffprobe) names it, keys lower-cased: the global
    metadata, or for Ogg, where comments belong to the stream, the audio stream's."""
    stream = ["-map_metadata", "0:s:a:0"] if path.suffix == ".opus" else []
    result = subprocess.run(
        [
            ffmpeg_exe(),
            "-nostdin",
            "-v",
            "error",
            "-i",
            str(path),
            *stream,
            "-f",
            "ffmetadata",
            "-",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    tags = {}
    for line in result.stdout.splitlines():
        if "=" in line and not line.startswith((";", "[")):
            key, _, value = line.partition("=")
            tags[key.lower()] = value
    return tags


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("tags")
    render_offline(workspace, book(workspace, PUBLISHING))
    return workspace / "outputs" / BOOK_DIR


@pytest.mark.parametrize("suffix", [".m4b", ".mp3", ".flac", ".opus"])
def test_every_format_carries_the_books_publishing_fields(rendered: Path, suffix: str) -> None:
    files = sorted(rendered.glob(f"*{suffix}"))
    assert files
    for path in files:
        tags = read_tags(path)
        seen = ffmpeg_tags(path)
        for field, (value, names) in EXPECTED.items():
            assert getattr(tags, field) == value, (path.name, field)
            found = [seen[name] for name in names if name in seen]
            assert found == [value], (path.name, field, seen)


@pytest.mark.parametrize(
    ("extra", "field", "why"),
    [
        ("isbn: 978-0-306-40615-8\n", "isbn", "check digit"),
        ("isbn: 12345\n", "isbn", "10 or 13 digits"),
        ("asin: b0lower\n", "asin", "10 capital letters"),
        ("series: Lights\nseries_part: first\n", "series_part", "a number like"),
        ("series_part: 3\n", "series_part", "needs the series"),
    ],
)
def test_a_bad_publishing_field_is_a_one_line_error(
    tmp_path: Path, extra: str, field: str, why: str
) -> None:
    result = render_offline(tmp_path, book(tmp_path, extra), code=2)
    [line] = result.output.strip().splitlines()
    assert re.search(rf"example-book\.yaml:\d+(:\d+)?: {field}", line), line
    assert why in line
    assert not (tmp_path / ".songbatch").exists()
