"""Subtitles end to end: the example book rendered with `subtitles: [srt, vtt]` through the
CLI, its .srt and .vtt files parsed back and held to the ledger's chunk timings, the audio's
length and the .m4b's chapter marks; then the cue builder on its own."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from mutagen.mp3 import MP3

from helpers.examples import BOOK_DIR, example_book, invoke, render_offline
from songbatch import subtitles
from songbatch.assemble import _silences
from songbatch.ledger import Ledger
from songbatch.presets import preset
from songbatch.subtitles import Cue, TimedChunk
from songbatch.tagging import read_chapters
from songbatch.workspace import Workspace

BOOK_STEM = "The Lighthouse Keeper's Almanac"

Parsed = list[tuple[int, int, str]]


def outputs(workspace: Path) -> Path:
    return workspace / "outputs" / BOOK_DIR


# ---------------------------------------------------------------------- parsing, our own

_TIMES = re.compile(r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d) --> (\d\d):(\d\d):(\d\d)[,.](\d\d\d)")


def _ms(parts: tuple[str, ...]) -> int:
    hours, minutes, seconds, millis = (int(p) for p in parts)
    return ((hours * 60 + minutes) * 60 + seconds) * 1000 + millis


def _blocks(text: str) -> list[list[str]]:
    assert text.endswith("\n\n")
    return [block.split("\n") for block in text[:-2].split("\n\n")]


def parse_srt(text: str) -> Parsed:
    cues = []
    for number, block in enumerate(_blocks(text), 1):
        assert block[0] == str(number)
        times = _TIMES.fullmatch(block[1])
        assert times is not None and "," in block[1], block
        cues.append((_ms(times.groups()[:4]), _ms(times.groups()[4:]), "\n".join(block[2:])))
    return cues


def parse_vtt(text: str) -> Parsed:
    assert text.startswith("WEBVTT\n\n")
    cues = []
    for block in _blocks(text[len("WEBVTT\n\n") :]):
        times = _TIMES.fullmatch(block[0])
        assert times is not None and "." in block[0], block
        body = "\n".join(block[1:])
        assert "<" not in body and "-->" not in body
        body = body.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
        cues.append((_ms(times.groups()[:4]), _ms(times.groups()[4:]), body))
    return cues


def read_both(stem: Path) -> Parsed:
    """The .srt's cues, checked to be the .vtt's too."""
    srt = parse_srt(stem.with_name(stem.name + ".srt").read_text(encoding="utf-8"))
    vtt = parse_vtt(stem.with_name(stem.name + ".vtt").read_text(encoding="utf-8"))
    assert srt == vtt
    return srt


def squeeze(text: str) -> str:
    return "".join(text.split())


# ---------------------------------------------------------------------- the rendered book


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workspace = tmp_path_factory.mktemp("subtitles")
    render_offline(workspace, example_book(workspace, extra="\nsubtitles: [srt, vtt]"))
    return workspace


def chapter_chunks(workspace: Path) -> list[list[tuple[int, int, str]]]:
    """Per chapter, (start, end, text) of each chunk, computed from the ledger as the master
    is laid out: the lead-in, then each chunk and its pause."""
    with Ledger.for_reading(Workspace(workspace).ledger_path) as ledger:
        [info] = ledger.manifests()
        chapters = []
        for unit in range(len(info.assembly.units)):
            jobs = ledger.unit_jobs(info.id, unit)
            requests = ledger.job_requests([job.key for job in jobs])
            at, pauses = _silences(
                info.assembly.lead_in_ms, [j.pause_after_ms for j in jobs], preset("none")
            )
            chunks = []
            for job, pause in zip(jobs, pauses, strict=True):
                assert job.duration_ms is not None
                chunks.append((at, at + job.duration_ms, requests[job.key].text))
                at += job.duration_ms + pause
            chapters.append(chunks)
        return chapters


def test_every_chapter_and_the_book_get_both_files(book: Path) -> None:
    names = sorted(path.name for path in outputs(book).iterdir())
    chapters = ["01 - The Lamp", "02 - The Storm", "03 - The Letter"]
    expected = [f"{stem}.{ext}" for stem in chapters for ext in ("mp3", "srt", "vtt")]
    expected += [f"{BOOK_STEM}.{ext}" for ext in ("m4b", "srt", "vtt")]
    assert names == sorted(expected)


def test_cues_start_with_their_chunks_and_say_what_was_spoken(book: Path) -> None:
    mp3s = sorted(outputs(book).glob("*.mp3"))
    for mp3, chunks in zip(mp3s, chapter_chunks(book), strict=True):
        cues = read_both(mp3.with_suffix(""))
        length_ms = MP3(mp3).info.length * 1000
        for (start, end, text), following in zip(cues, [*cues[1:], None], strict=True):
            assert 0 <= start <= end <= length_ms, (mp3, start, end)
            assert following is None or end <= following[0], (mp3, text)
            lines = text.split("\n")
            assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), text
        # The text of the cues is the text of the chunks, in order.
        assert squeeze("".join(c[2] for c in cues)) == squeeze("".join(c[2] for c in chunks))
        # Walk both by characters: each chunk's first cue starts within 50 ms of the chunk,
        # and every cue lies inside its chunk.
        at, index = 0, 0
        for chunk_start, chunk_end, chunk_text in chunks:
            first = cues[index]
            assert abs(first[0] - chunk_start) <= 50, (mp3, chunk_text)
            end_at = at + len(squeeze(chunk_text))
            while at < end_at:
                start, end, text = cues[index]
                assert chunk_start - 50 <= start and end <= chunk_end + 50, (mp3, text)
                at += len(squeeze(text))
                index += 1
            assert at == end_at, "a cue spans two chunks"
        assert index == len(cues)


def test_a_long_chunk_is_spread_over_its_sentences(book: Path) -> None:
    chunks = chapter_chunks(book)[0]
    cues = read_both(outputs(book) / "01 - The Lamp")
    assert len(cues) > len(chunks)  # sentences, not chunks
    assert any(text.endswith("before him.") for _, _, text in cues)


def test_the_book_file_moves_each_chapter_to_its_m4b_mark(book: Path) -> None:
    marks = read_chapters(outputs(book) / f"{BOOK_STEM}.m4b")
    assert [title for title, _ in marks] == ["The Lamp", "The Storm", "The Letter"]
    whole = read_both(outputs(book) / BOOK_STEM)
    expected: Parsed = []
    for (_, start_ms), mp3 in zip(marks, sorted(outputs(book).glob("*.mp3")), strict=True):
        expected += [(s + start_ms, e + start_ms, t) for s, e, t in read_both(mp3.with_suffix(""))]
    assert len(whole) == len(expected)
    for got, want in zip(whole, expected, strict=True):
        assert got[2] == want[2]
        assert abs(got[0] - want[0]) <= 2 and abs(got[1] - want[1]) <= 2, (got, want)


def test_subtitles_are_recorded_outputs(book: Path) -> None:
    with Ledger.for_reading(Workspace(book).ledger_path) as ledger:
        [info] = ledger.manifests()
        formats = sorted(record.fmt for record in ledger.outputs(info.id))
    assert formats == sorted(["m4b", *["mp3"] * 3, *["srt"] * 4, *["vtt"] * 4])


# ---------------------------------------------------------------------- runs that follow


def test_subtitles_stay_current_and_go_with_the_field(tmp_path: Path) -> None:
    manifest = example_book(tmp_path, extra="\nsubtitles: [srt, vtt]")
    render_offline(tmp_path, manifest)
    subs = sorted([*outputs(tmp_path).glob("*.srt"), *outputs(tmp_path).glob("*.vtt")])
    assert len(subs) == 8
    stamps = {path: path.stat().st_mtime_ns for path in subs}

    again = render_offline(tmp_path, manifest)
    assert "0 file(s) written" in again.output
    assert {path: path.stat().st_mtime_ns for path in subs} == stamps

    # A file deleted or edited since is written again; the others are left as they are.
    book_vtt = outputs(tmp_path) / f"{BOOK_STEM}.vtt"
    kept = book_vtt.read_bytes()
    book_vtt.unlink()
    edited = outputs(tmp_path) / "02 - The Storm.srt"
    edited.write_text("1\n00:00:00,000 --> 00:00:01,000\nedited\n\n", "utf-8")
    again = render_offline(tmp_path, manifest)
    assert "2 file(s) written" in again.output
    assert book_vtt.read_bytes() == kept and "edited" not in edited.read_text("utf-8")
    stamps = {path: path.stat().st_mtime_ns for path in subs}

    # Only the .vtt files: the .srt ones are removed, as a dropped format's files are.
    manifest.write_text(
        manifest.read_text("utf-8").replace("subtitles: [srt, vtt]", "subtitles: [vtt]"), "utf-8"
    )
    render_offline(tmp_path, manifest)
    assert not list(outputs(tmp_path).glob("*.srt"))
    assert {path: path.stat().st_mtime_ns for path in subs if path.suffix == ".vtt"} == {
        path: stamp for path, stamp in stamps.items() if path.suffix == ".vtt"
    }

    render_offline(tmp_path, example_book(tmp_path))
    assert sorted(p.suffix for p in outputs(tmp_path).iterdir()) == [".m4b", *[".mp3"] * 3]
    with Ledger.for_reading(Workspace(tmp_path).ledger_path) as ledger:
        [info] = ledger.manifests()
        assert sorted(r.fmt for r in ledger.outputs(info.id)) == ["m4b", "mp3", "mp3", "mp3"]
        # An unchanged plan for books without them.
        assert "subtitles" not in info.assembly.to_dict()


def test_a_subtitle_file_songbatch_did_not_write_is_left_alone(tmp_path: Path) -> None:
    manifest = example_book(tmp_path, extra="\nsubtitles: [srt]")
    folder = outputs(tmp_path)
    folder.mkdir(parents=True)
    mine = folder / "01 - The Lamp.srt"
    mine.write_text("1\n00:00:00,000 --> 00:00:01,000\nmy own\n\n", "utf-8")
    result = render_offline(tmp_path, manifest, code=1)
    assert "songbatch did not write it" in result.output
    assert mine.read_text("utf-8").endswith("my own\n\n")
    assert (folder / "02 - The Storm.srt").is_file()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[txt]", "subtitles[0]"),
        ("[srt, srt]", "'srt' is listed twice"),
        ("srt", "subtitles"),
        ("A Tale of the Sea", "a book's subtitle text is `subtitle:`"),
    ],
)
def test_a_bad_subtitles_field_is_one_line_and_exit_2(
    tmp_path: Path, value: str, message: str
) -> None:
    manifest = example_book(tmp_path, extra=f"\nsubtitles: {value}")
    result = render_offline(tmp_path, manifest, code=2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert re.match(r".*example-book\.yaml:14:\d+: ", lines[0]), lines[0]
    assert message in lines[0]
    assert not (tmp_path / ".songbatch").exists()


def test_a_chapter_named_like_the_book_is_refused_with_subtitles(tmp_path: Path) -> None:
    manifest = example_book(tmp_path, extra="\nsubtitles: [vtt]")
    text = manifest.read_text("utf-8").replace(
        "  - title: The Storm\n", f"  - title: The Storm\n    file: {BOOK_STEM}\n"
    )
    manifest.write_text(text, "utf-8")
    result = render_offline(tmp_path, manifest, code=2)
    [line] = result.output.strip().splitlines()
    assert "chapters[1].file" in line and "the book's" in line


def test_a_mastered_book_with_subtitles_renders(tmp_path: Path) -> None:
    manifest = example_book(tmp_path, extra="\nsubtitles: [vtt]\nmaster: podcast")
    # The preset's check measures the audio only: never the subtitles.
    result = render_offline(tmp_path, manifest)
    assert not [
        line for line in result.output.splitlines() if ".vtt" in line and "output" not in line
    ]
    assert (outputs(tmp_path) / f"{BOOK_STEM}.vtt").is_file()


def test_check_on_a_manifest_with_subtitles_measures_its_audio(book: Path) -> None:
    manifest = book / "manifests" / "example-book.yaml"
    result = invoke("check", str(manifest), "--workspace", str(book), "--json")
    assert result.exit_code == 0, result.output
    assert ".srt" not in result.output and ".mp3" in result.output


WRITTEN_BOOK = """\
kind: audiobook
title: Written Words
author: A. Writer
profile: offline
formats: [mp3]
subtitles: [srt, vtt]
{extra}
chapters:
  - title: The Bill
    text: |
      Dr. Smith paid $12 on 4 July 1998. He read chapter XIV twice.

      Nothing here is said another way.
"""

WRITTEN_CUES = [
    "The Bill",
    "Dr. Smith paid $12 on 4 July 1998.",
    "He read chapter XIV twice.",
    "Nothing here is said another way.",
]


def _written_book(workspace: Path, extra: str = "") -> Path:
    path = workspace / "book.yaml"
    path.write_text(WRITTEN_BOOK.format(extra=extra), encoding="utf-8")
    return path


def _cue_texts(workspace: Path) -> list[str]:
    return [
        " ".join(text.split())
        for *_, text in read_both(workspace / "outputs" / "written-words" / "01 - The Bill")
    ]


@pytest.mark.parametrize("extra", ["", "lexicon:\n  Smith: Smyth", "normalise: false"])
def test_cues_show_the_books_own_words_not_the_voiced_ones(tmp_path: Path, extra: str) -> None:
    render_offline(tmp_path, _written_book(tmp_path, extra))
    assert _cue_texts(tmp_path) == WRITTEN_CUES


def test_a_ledger_planned_before_written_words_were_kept_gets_them_without_a_render(
    tmp_path: Path,
) -> None:
    manifest = _written_book(tmp_path)
    render_offline(tmp_path, manifest)
    # The ledger as an older songbatch left it: no column, its migration not applied.
    path = Workspace(tmp_path).ledger_path
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("ALTER TABLE manifest_jobs DROP COLUMN written")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm009_written'")
    conn.close()
    with Ledger(path) as ledger:  # migrated: the old rows have no written words
        [info] = ledger.manifests()
        assert all(job.written is None for job in ledger.unit_jobs(info.id, 0))
    again = render_offline(tmp_path, manifest)
    assert "rendered 0 job(s)" in again.output
    assert _cue_texts(tmp_path) == WRITTEN_CUES


# ---------------------------------------------------------------------- the cue builder


def test_sentences_share_a_chunk_by_characters_and_end_at_its_end() -> None:
    chunk = TimedChunk("One two. Three four five six.", start_ms=1000, duration_ms=3000)
    cues = subtitles.chunk_cues(chunk)
    assert [c.text for c in cues] == ["One two.", "Three four five six."]
    assert cues[0].start_ms == 1000 and cues[-1].end_ms == 4000
    assert cues[0].end_ms == cues[1].start_ms == 1000 + round(3000 * 8 / 28)


def test_a_long_sentence_becomes_several_cues_of_two_lines() -> None:
    sentence = " ".join(["lighthouse"] * 30) + "."
    cues = subtitles.chunk_cues(TimedChunk(sentence, start_ms=0, duration_ms=10_000))
    assert len(cues) == 5  # three 10-letter words a line: 43 characters would not fit
    for cue in cues:
        lines = cue.text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines)
    assert squeeze("".join(c.text for c in cues)) == squeeze(sentence)
    assert [c.start_ms for c in cues[1:]] == [c.end_ms for c in cues[:-1]]
    assert cues[-1].end_ms == 10_000


def test_an_engines_sentence_times_are_used_where_it_reports_them() -> None:
    info = {subtitles.SENTENCE_TIMES: [[100, 900, "One two."], [1200, 5000, "Three."]]}
    chunk = TimedChunk("One two. Three.", start_ms=500, duration_ms=3000, info=info)
    assert subtitles.chunk_cues(chunk) == [Cue(600, 1400, "One two."), Cue(1700, 3500, "Three.")]
    unusable = TimedChunk("One two.", start_ms=0, duration_ms=100, info={"sentence_times": 3})
    assert subtitles.chunk_cues(unusable) == [Cue(0, 100, "One two.")]


def test_both_formats_write_what_they_should() -> None:
    cues = [Cue(1234, 3456, "a <b> & c"), Cue(3_600_000 + 61_001, 3_600_000 + 62_000, "x\ny")]
    assert subtitles.to_srt(cues) == (
        "1\n00:00:01,234 --> 00:00:03,456\na <b> & c\n\n2\n01:01:01,001 --> 01:01:02,000\nx\ny\n\n"
    )
    assert subtitles.to_vtt(cues) == (
        "WEBVTT\n\n00:00:01.234 --> 00:00:03.456\na &lt;b&gt; &amp; c\n\n"
        "01:01:01.001 --> 01:01:02.000\nx\ny\n\n"
    )
