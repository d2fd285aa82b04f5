"""`mp3-book` end to end: the example book as one MP3 beside its .m4b, with an ID3v2.4 CTOC
(top-level, ordered) listing a CHAP frame per chapter at the .m4b's chapter starts, back to
back to the file's end, titled, tagged with the book's tags and cover; a second render writes
nothing, dropping the format prunes the file, `parts:` splits it as it splits the .m4b; albums
refuse it, and a chapter file that would be the book's .mp3 is a one-line error."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from mutagen.id3 import ID3, CTOCFlags
from mutagen.mp3 import MP3

from helpers.examples import BOOK_DIR, REPO, example_album, example_book, invoke, render_offline
from songbatch.tagging import read_chapters, read_mp3_chapters, read_origin, read_tags
from test_parts import BOOK, TITLES


def files_as_they_are(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_size)
        for p in sorted(folder.iterdir())
    }


def assert_chapters_match(mp3: Path, m4b: Path, titles: list[str]) -> None:
    """The MP3's CTOC and CHAP frames against the .m4b's chapter marks."""
    id3 = ID3(mp3)
    assert id3.version == (2, 4, 0)
    [toc] = id3.getall("CTOC")
    assert toc.flags & CTOCFlags.TOP_LEVEL and toc.flags & CTOCFlags.ORDERED
    chaps = {frame.element_id: frame for frame in id3.getall("CHAP")}
    assert list(toc.child_element_ids) == sorted(chaps, key=lambda k: chaps[k].start_time)
    assert set(toc.child_element_ids) == set(chaps)
    ordered = [chaps[child] for child in toc.child_element_ids]
    assert [str(frame.sub_frames["TIT2"].text[0]) for frame in ordered] == titles
    marks = read_chapters(m4b)
    assert [title for title, _ in marks] == titles
    for frame, (_title, start_ms) in zip(ordered, marks, strict=True):
        assert abs(frame.start_time - start_ms) <= 50, (frame, start_ms)
    assert ordered[0].start_time == 0
    for earlier, later in itertools.pairwise(ordered):
        assert earlier.end_time == later.start_time
    length_ms = MP3(mp3).info.length * 1000
    assert abs(ordered[-1].end_time - length_ms) <= 100, (ordered[-1].end_time, length_ms)
    # songbatch reads them back the same way.
    assert read_mp3_chapters(mp3) == [
        (str(f.sub_frames["TIT2"].text[0]), f.start_time, f.end_time) for f in ordered
    ]
    assert read_chapters(mp3) == [(t, s) for t, s, _ in read_mp3_chapters(mp3)]


def test_the_whole_book_as_one_mp3_with_chapter_frames(tmp_path: Path) -> None:
    book = example_book(tmp_path, formats="[m4b, mp3-book]")
    render_offline(tmp_path, book)
    out = tmp_path / "outputs" / BOOK_DIR
    assert sorted(p.name for p in out.iterdir()) == [f"{BOOK}.m4b", f"{BOOK}.mp3"]
    mp3, m4b = out / f"{BOOK}.mp3", out / f"{BOOK}.m4b"
    assert_chapters_match(mp3, m4b, TITLES)

    tags = read_tags(mp3)
    assert tags.title == BOOK
    assert tags.album == BOOK
    assert tags.artist == "A. N. Example"
    assert tags.narrator == "The Offline Voice"
    assert tags.track is None
    assert tags.cover_bytes == (REPO / "manifests/example-book/cover.png").read_bytes()
    assert read_origin(mp3) is not None  # whose it is, as in every format
    # `songbatch check` lists the book MP3's chapters as it lists the .m4b's.
    checked = invoke("check", str(mp3), "--json")
    assert checked.exit_code == 0, checked.output
    [file] = json.loads(checked.output)["files"]
    assert [c["title"] for c in file["measurement"]["chapters"]] == TITLES

    # Nothing changed: nothing is written again.
    before = files_as_they_are(out)
    render_offline(tmp_path, book)
    assert files_as_they_are(out) == before

    # The format goes, and its file with it; the .m4b stays as it was.
    example_book(tmp_path, formats="[m4b]")
    result = render_offline(tmp_path, book)
    assert sorted(p.name for p in out.iterdir()) == [f"{BOOK}.m4b"]
    assert files_as_they_are(out)[f"{BOOK}.m4b"] == before[f"{BOOK}.m4b"]
    assert f"{BOOK}.mp3" in result.output  # reported as removed


def test_mp3_book_without_m4b_beside_chapter_mp3s_with_subtitles(tmp_path: Path) -> None:
    book = example_book(tmp_path, extra="\nsubtitles: [srt]", formats="[mp3-book, mp3]")
    render_offline(tmp_path, book)
    out = tmp_path / "outputs" / BOOK_DIR
    names = sorted(p.name for p in out.iterdir())
    assert f"{BOOK}.mp3" in names and not any(n.endswith(".m4b") for n in names)
    assert len([n for n in names if n.endswith(".mp3")]) == len(TITLES) + 1
    assert [title for title, _ in read_chapters(out / f"{BOOK}.mp3")] == TITLES
    assert read_tags(out / "01 - The Lamp.mp3").track == (1, 3)  # chapter files as before
    # The whole book's subtitles come with the book MP3 as with the .m4b: one per stem.
    assert len([n for n in names if n.endswith(".srt")]) == len(TITLES) + 1
    assert (out / f"{BOOK}.srt").read_text(encoding="utf-8").startswith("1\n00:00:00,")


def test_parts_split_the_mp3_as_they_split_the_m4b(tmp_path: Path) -> None:
    book = example_book(tmp_path, extra="\nparts: {max_hours: 0.015}", formats="[m4b, mp3-book]")
    render_offline(tmp_path, book)
    out = tmp_path / "outputs" / BOOK_DIR
    m4bs = sorted(out.glob("*.m4b"))
    mp3s = sorted(out.glob("*.mp3"))
    assert len(m4bs) >= 2
    assert [p.stem for p in mp3s] == [p.stem for p in m4bs]
    assert all(" - Part " in p.stem for p in mp3s)
    seen: list[str] = []
    for n, (mp3, m4b) in enumerate(zip(mp3s, m4bs, strict=True), start=1):
        titles = [title for title, _ in read_chapters(m4b)]
        assert_chapters_match(mp3, m4b, titles)
        seen += titles
        tags = read_tags(mp3)
        assert tags.album == BOOK
        assert tags.title == f"{BOOK}, Part {n}"
        assert tags.track == tags.disc == (n, len(mp3s))
        assert tags.cover_bytes
    assert seen == TITLES

    # mp3-book alone may be split too.
    example_book(tmp_path, extra="\nparts: {max_hours: 0.015}", formats="[mp3-book]")
    render_offline(tmp_path, book)
    assert sorted(p.name for p in out.iterdir()) == [p.name for p in mp3s]


def test_an_album_refuses_mp3_book(tmp_path: Path) -> None:
    album = example_album(tmp_path, formats="[mp3, mp3-book]")
    message = render_offline(tmp_path, album, code=2).output.strip()
    assert len(message.splitlines()) == 1, message
    assert "formats[1]" in message
    assert "mp3-book is an audiobook format" in message


@pytest.mark.parametrize(
    ("file", "extra", "whose"),
    [(BOOK, "", "is the book's"), (f"{BOOK} - Part 2", "\nparts: {max_hours: 0.015}", "part 2")],
)
def test_a_chapter_file_that_would_be_the_book_mp3_is_refused(
    tmp_path: Path, file: str, extra: str, whose: str
) -> None:
    book = example_book(tmp_path, extra=extra, formats="[m4b, mp3-book, mp3]")
    text = book.read_text(encoding="utf-8").replace(
        "  - title: The Storm\n", f'  - title: The Storm\n    file: "{file}"\n'
    )
    book.write_text(text, encoding="utf-8")
    message = render_offline(tmp_path, book, code=2).output.strip()
    assert len(message.splitlines()) == 1, message
    assert "chapter 2's file name" in message
    assert whose in message
    assert not (tmp_path / "outputs").exists()
    # Without chapter MP3s the names do not meet.
    book.write_text(text.replace("[m4b, mp3-book, mp3]", "[m4b, mp3-book]"), "utf-8")
    render_offline(tmp_path, book)


def test_mp3_book_takes_its_own_encoding_entry(tmp_path: Path) -> None:
    extra = "\nencoding:\n  mp3-book: {bitrate: 48, mode: cbr}"
    render_offline(tmp_path, example_book(tmp_path, extra=extra, formats="[mp3-book, mp3]"))
    out = tmp_path / "outputs" / BOOK_DIR
    assert MP3(out / f"{BOOK}.mp3").info.bitrate == 48_000
    assert MP3(out / "01 - The Lamp.mp3").info.bitrate != 48_000  # `mp3:` is the chapters'
