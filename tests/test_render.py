"""End to end through the real CLI: both example manifests rendered with the offline profile,
every file read back (duration, sample rate, tags, chapters, cover); re-runs and edits."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile
from mutagen import File as MutagenFile
from mutagen.id3 import ID3
from mutagen.mp4 import MP4

from helpers.books import run_songbatch
from helpers.verify import verify_done_exactly_once
from songbatch.ledger import Ledger
from songbatch.tagging import read_chapters, read_tags

REPO = Path(__file__).resolve().parents[1]
BOOK_DIR = "the-lighthouse-keeper-s-almanac"
ALBUM_DIR = "harbour-lights"


def copy_examples(tmp_path: Path) -> Path:
    target = tmp_path / "manifests"
    shutil.copytree(REPO / "manifests", target)
    return target


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One workspace with both examples rendered, shared by the read-back tests."""
    workspace = tmp_path_factory.mktemp("ws")
    manifests = copy_examples(workspace)
    result = run_songbatch(
        "render",
        str(manifests / "example-book.yaml"),
        str(manifests / "example-album.yaml"),
        "--workspace",
        str(workspace),
        cwd=workspace,
    )
    assert result.returncode == 0, result.stderr
    return workspace


def ledger_durations(workspace: Path) -> dict[int, int]:
    """Per chapter of the book: the sum of its chunks' audio and pauses, plus the lead-in."""
    with Ledger(workspace / ".songbatch" / "ledger.db") as ledger:
        [book] = [info for info in ledger.manifests() if info.kind == "audiobook"]
        return {
            unit.unit: book.assembly.lead_in_ms
            + sum(
                (job.duration_ms or 0) + job.pause_after_ms
                for job in ledger.unit_jobs(book.id, unit.unit)
            )
            for unit in book.assembly.units
        }


def test_book_chapters_are_tagged_mp3s_of_the_right_length(rendered: Path) -> None:
    expected = ledger_durations(rendered)
    files = sorted((rendered / "outputs" / BOOK_DIR).glob("*.mp3"))
    assert [f.name for f in files] == [
        "01 - The Lamp.mp3",
        "02 - The Storm.mp3",
        "03 - The Letter.mp3",
    ]
    cover = (REPO / "manifests" / "example-book" / "cover.png").read_bytes()
    for index, path in enumerate(files):
        audio = MutagenFile(path)
        assert audio.info.sample_rate == 22050
        # MP3 encoders add a frame or two of padding; the chapter is otherwise exact.
        assert audio.info.length == pytest.approx(expected[index] / 1000, abs=0.08)
        tags = read_tags(path)
        assert tags.title == ["The Lamp", "The Storm", "The Letter"][index]
        assert tags.album == "The Lighthouse Keeper's Almanac"
        assert tags.artist == tags.album_artist == "A. N. Example"
        assert tags.narrator == "The Offline Voice"
        assert tags.track == (index + 1, 3)
        assert tags.genre == "Audiobook"
        assert tags.year == 2024
        assert tags.language == "en-GB"
        assert tags.description and "lighthouse" in tags.description
        assert tags.cover_bytes == cover
        # Where Audiobookshelf and Plex look for the narrator: the composer frame.
        assert str(ID3(path)["TCOM"]) == "The Offline Voice"


def test_book_m4b_has_chapters_cover_and_tags(rendered: Path) -> None:
    expected = ledger_durations(rendered)
    [m4b] = (rendered / "outputs" / BOOK_DIR).glob("*.m4b")
    assert m4b.name == "The Lighthouse Keeper's Almanac.m4b"
    mp4 = MP4(m4b)
    # Joined from chapter streams: each chapter adds its encoder's priming and last frame's
    # padding (at most two AAC frames, 93 ms at 22.05 kHz) to the silence between chapters.
    framing_s = len(expected) * 2 * 1024 / 22050
    assert 0 <= mp4.info.length - sum(expected.values()) / 1000 <= framing_s
    chapters = read_chapters(m4b)
    assert [title for title, _ in chapters] == ["The Lamp", "The Storm", "The Letter"]
    starts = [start for _, start in chapters]
    assert starts[0] == 0
    # Each mark where its chapter is heard: after the chapters before it, their framing, and
    # its own priming (tests/test_streams.py finds the audio at the mark to the sample).
    for number in (1, 2):
        before = sum(expected[i] for i in range(number))
        assert 0 <= starts[number] - before <= number * framing_s * 1000 / len(expected)
    tags = read_tags(m4b)
    assert tags.title == tags.album == "The Lighthouse Keeper's Almanac"
    assert tags.narrator == "The Offline Voice"
    assert mp4.tags is not None and mp4.tags["©wrt"] == ["The Offline Voice"]
    assert mp4.tags["stik"] == [2]  # iTunes media kind: audiobook
    assert tags.cover_bytes == (REPO / "manifests" / "example-book" / "cover.png").read_bytes()


def test_album_tracks_in_every_format_with_exact_length(rendered: Path) -> None:
    folder = rendered / "outputs" / ALBUM_DIR
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "01 - Low Tide.flac",
        "01 - Low Tide.mp3",
        "02 - Lantern Song.flac",
        "02 - Lantern Song.mp3",
    ]
    for index, (title, seconds) in enumerate([("Low Tide", 20.0), ("Lantern Song", 28.0)]):
        flac = folder / f"{index + 1:02d} - {title}.flac"
        info = soundfile.info(str(flac))
        assert info.samplerate == 32000 and info.channels == 2
        assert info.frames == round(seconds * 32000)
        mp3 = MutagenFile(folder / f"{index + 1:02d} - {title}.mp3")
        assert mp3.info.length == pytest.approx(seconds, abs=0.08)
        for path in (flac, folder / f"{index + 1:02d} - {title}.mp3"):
            tags = read_tags(path)
            assert tags.title == title
            assert tags.album == "Harbour Lights"
            assert tags.artist == tags.album_artist == "The Example Ensemble"
            assert tags.track == (index + 1, 2)
            assert tags.genre == "Ambient"
            assert tags.year == 2024
            assert tags.comment is not None and tags.comment.startswith("SKETCH")
            assert (
                tags.cover_bytes
                == (REPO / "manifests" / "example-album" / "cover.png").read_bytes()
            )


def test_the_rendered_workspace_keeps_the_contract(rendered: Path) -> None:
    counts = verify_done_exactly_once(rendered)
    assert counts["outputs"] == 3 + 1 + 4


def test_a_rerun_renders_and_writes_nothing(rendered: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in (rendered / "outputs").rglob("*") if p.is_file()}
    manifests = rendered / "manifests"
    result = run_songbatch(
        "render",
        str(manifests / "example-book.yaml"),
        str(manifests / "example-album.yaml"),
        "--workspace",
        str(rendered),
        cwd=rendered,
    )
    assert result.returncode == 0, result.stderr
    assert "rendered 0 job(s)" in result.stderr
    after = {p: p.stat().st_mtime_ns for p in (rendered / "outputs").rglob("*") if p.is_file()}
    assert after == before


def test_status_json_after_render(rendered: Path) -> None:
    result = run_songbatch("status", "--json", "--workspace", str(rendered), cwd=rendered)
    assert result.returncode == 0, result.stderr
    rows = {row["title"]: row for row in json.loads(result.stdout)}
    book = rows["The Lighthouse Keeper's Almanac"]
    assert book["jobs"]["done"] == book["total"] > 3
    assert book["jobs"]["pending"] == book["jobs"]["failed"] == 0
    assert book["rendered_ms"] > 60_000
    assert len(book["outputs"]) == 4
    assert rows["Harbour Lights"]["rendered_ms"] == 48_000


def test_editing_one_chapter_rerenders_only_its_changed_chunks(tmp_path: Path) -> None:
    manifests = copy_examples(tmp_path)
    book = manifests / "example-book.yaml"
    first = run_songbatch("render", str(book), "--workspace", str(tmp_path), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    storm = manifests / "example-book" / "02-the-storm.txt"
    storm.write_text(storm.read_text(encoding="utf-8") + "\nThe end of the storm.\n", "utf-8")
    plan = run_songbatch("plan", str(book), "--json", "--workspace", str(tmp_path), cwd=tmp_path)
    [row] = json.loads(plan.stdout)
    assert (row["new"], row["reused"], row["dropped"]) == (1, 0, 0)
    assert row["unchanged"] == row["jobs"] - 1
    second = run_songbatch("render", str(book), "--workspace", str(tmp_path), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "rendered 1 job(s)" in second.stderr
    # Chapter 2 and the m4b are rewritten; chapters 1 and 3 are not.
    assert "02 - The Storm.mp3" in second.stderr
    assert "01 - The Lamp.mp3" not in second.stderr
    verify_done_exactly_once(tmp_path)


def test_a_second_manifest_reuses_the_first_ones_audio(tmp_path: Path) -> None:
    manifests = copy_examples(tmp_path)
    book = manifests / "example-book.yaml"
    assert (
        run_songbatch("render", str(book), "--workspace", str(tmp_path), cwd=tmp_path).returncode
        == 0
    )
    twin = manifests / "twin.yaml"
    twin.write_text(
        book.read_text(encoding="utf-8").replace(
            "title: The Lighthouse Keeper's Almanac", "title: The Twin"
        ),
        encoding="utf-8",
    )
    plan = run_songbatch("plan", str(twin), "--json", "--workspace", str(tmp_path), cwd=tmp_path)
    [row] = json.loads(plan.stdout)
    assert row["new"] == 0 and row["reused"] == row["jobs"]
    result = run_songbatch("render", str(twin), "--workspace", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "rendered 0 job(s)" in result.stderr
    assert len(list((tmp_path / "outputs" / "the-twin").iterdir())) == 4
