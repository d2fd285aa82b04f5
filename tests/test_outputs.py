"""A person's files: outputs belong to exactly one manifest, follow the manifest, honour the
umask, and songbatch never touches a file it did not write. Through the CLI, in-process, on the
synthetic engine (a fixed-latency tone: the behaviour under test is the files', not a model's).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from helpers.books import synthetic_profile
from helpers.verify import temp_files
from songbatch.cli.main import app
from songbatch.fsutil import temp_sibling
from songbatch.ledger import Ledger
from songbatch.tagging import read_tags

runner = CliRunner()


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def write_book(
    path: Path,
    title: str,
    chapters: list[str],
    *,
    formats: str = "[flac]",
    extra: str = "",
) -> Path:
    lines = [
        "kind: audiobook",
        f"title: {json.dumps(title, ensure_ascii=False)}",
        "author: Test Author",
        "profile: synthetic.yaml",
        f"formats: {formats}",
        "speak_titles: false",
        *([extra] if extra else []),
        "chapters:",
    ]
    for number, name in enumerate(chapters, start=1):
        lines += [f"  - title: {name}", f'    text: "Sentence {number} of {name}."']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def render(workspace: Path, *manifests: Path) -> Any:
    return invoke("render", *map(str, manifests), "--workspace", str(workspace))


def status(workspace: Path) -> list[dict[str, Any]]:
    result = invoke("status", "--workspace", str(workspace), "--json")
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.output)
    return rows


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    synthetic_profile(tmp_path, latency_ms=1, devices="cpu:1")
    return tmp_path


# --- one owner per file ----------------------------------------------------------------------


def test_two_books_titled_alike_in_one_run_are_refused_before_anything_is_written(
    ws: Path,
) -> None:
    first = write_book(ws / "a.yaml", "Same Title", ["One"])
    second = write_book(ws / "b.yaml", "Same Title", ["One"])
    result = render(ws, first, second)
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "\n" not in message
    assert str(first) in message and "b.yaml:2:8: title:" in message
    assert str(ws / "outputs" / "same-title" / "01 - One.flac") in message
    assert not (ws / ".songbatch").exists() and not (ws / "outputs").exists()


def test_a_second_run_of_a_book_titled_alike_is_refused_and_the_first_keeps_its_files(
    ws: Path,
) -> None:
    first = write_book(ws / "a.yaml", "Same Title", ["One", "Two"])
    assert render(ws, first).exit_code == 0
    written = {p: p.read_bytes() for p in (ws / "outputs" / "same-title").iterdir()}
    ledger = (ws / ".songbatch" / "ledger.db").read_bytes()
    second = write_book(ws / "b.yaml", "Same Title", ["Other", "Two"])
    result = render(ws, second)
    assert result.exit_code == 2, result.output
    assert str(first) in result.output and "b.yaml" in result.output
    assert "02 - Two.flac" in result.output
    assert {p: p.read_bytes() for p in (ws / "outputs" / "same-title").iterdir()} == written
    assert (ws / ".songbatch" / "ledger.db").read_bytes() == ledger
    assert [row["path"] for row in status(ws)] == [str(first)]
    plan = invoke("plan", str(second), "--workspace", str(ws))
    assert plan.exit_code == 2 and str(first) in plan.output
    # Books that share a folder but no file are fine.
    third = write_book(ws / "c.yaml", "Same Title", ["Three", "Four", "Five"])
    assert render(ws, third).exit_code == 0


def test_a_moved_manifest_takes_its_outputs_along(ws: Path) -> None:
    old = write_book(ws / "a.yaml", "Moving Book", ["One"])
    assert render(ws, old).exit_code == 0
    new = old.rename(ws / "renamed.yaml")
    result = render(ws, new)
    assert result.exit_code == 0, result.output
    assert [row["path"] for row in status(ws)] == [str(new)]
    assert status(ws)[0]["outputs"] == [str(ws / "outputs" / "moving-book" / "01 - One.flac")]


@pytest.mark.parametrize(
    ("title", "folder", "chapter"),
    [
        ("三体", "三体", "黑暗森林"),
        ("Война и мир", "война-и-мир", "Глава"),
        ("الأمير الصغير", "الأمير-الصغير", "الفصل"),
        ("Crème Brûlée", "crème-brûlée", "Première"),
    ],
)
def test_non_ascii_titles_keep_their_letters(
    ws: Path, title: str, folder: str, chapter: str
) -> None:
    book = write_book(ws / "book.yaml", title, [chapter])
    assert render(ws, book).exit_code == 0
    assert sorted(p.name for p in (ws / "outputs" / folder).iterdir()) == [f"01 - {chapter}.flac"]


def test_books_titled_in_different_scripts_land_in_different_folders(ws: Path) -> None:
    books = [
        write_book(ws / "a.yaml", "三体", ["一"]),
        write_book(ws / "b.yaml", "Война и мир", ["Глава"]),
    ]
    assert render(ws, *books).exit_code == 0
    assert sorted(p.name for p in (ws / "outputs").iterdir()) == ["война-и-мир", "三体"]


# --- outputs follow the manifest ---------------------------------------------------------------


def test_a_removed_chapter_and_format_lose_their_files_and_nothing_else(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Shrinking", ["One", "Two", "Three"], formats="[flac, wav]")
    assert render(ws, book).exit_code == 0
    folder = ws / "outputs" / "shrinking"
    mine = folder / "notes.txt"
    mine.write_text("the person's own file")
    lookalike = folder / "02 - Two.mp3"  # a name songbatch might use, but it did not write it
    lookalike.write_bytes(b"not ours")
    write_book(ws / "book.yaml", "Shrinking", ["One", "Three"], formats="[flac]")
    result = render(ws, book)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in folder.iterdir()) == [
        "01 - One.flac",
        "02 - Three.flac",
        "02 - Two.mp3",
        "notes.txt",
    ]
    assert mine.read_text() == "the person's own file" and lookalike.read_bytes() == b"not ours"
    [row] = status(ws)
    assert sorted(Path(p).name for p in row["outputs"]) == ["01 - One.flac", "02 - Three.flac"]


def test_a_renamed_book_moves_to_its_new_folder(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Old Name", ["One"])
    assert render(ws, book).exit_code == 0
    write_book(ws / "book.yaml", "New Name", ["One"])
    assert render(ws, book).exit_code == 0
    assert sorted(p.name for p in (ws / "outputs").iterdir()) == ["new-name"]


def test_a_file_changed_since_it_was_written_is_left_when_its_chapter_goes(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Edited", ["One", "Two"])
    assert render(ws, book).exit_code == 0
    edited = ws / "outputs" / "edited" / "02 - Two.flac"
    edited.write_bytes(edited.read_bytes() + b"the person's edit")
    write_book(ws / "book.yaml", "Edited", ["One"])
    result = render(ws, book)
    assert result.exit_code == 0
    assert edited.exists() and "left in place" in result.output


# --- modes and temp files ------------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_outputs_honour_the_umask_and_the_ledger_stays_private(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Shared", ["One"], formats="[flac, mp3, m4b]")
    previous = os.umask(0o022)
    try:
        assert render(ws, book).exit_code == 0
    finally:
        os.umask(previous)
    folder = ws / "outputs" / "shared"
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"01 - One.flac": 0o644, "01 - One.mp3": 0o644, "Shared.m4b": 0o644}
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    state = ws / ".songbatch"
    assert stat.S_IMODE((state / "ledger.db").stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_run_sweeps_only_its_own_temp_files(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Temps", ["One"])
    folder = ws / "outputs" / "temps"
    folder.mkdir(parents=True)
    strangers = [
        folder / ".x.tmp",  # an editor's backup
        folder / ".01 - One.flac.tmp",  # a sync tool's partial file
        temp_sibling(folder / "01 - One.flac", "fedcba9876543210"),  # another workspace's
    ]
    for path in strangers:
        path.write_bytes(b"someone else's")
    assert render(ws, book).exit_code == 0
    assert all(path.read_bytes() == b"someone else's" for path in strangers)
    assert (folder / "01 - One.flac").exists()


# --- assembly failures are per file --------------------------------------------------------------


def test_a_folder_in_the_way_fails_that_file_alone_with_its_reason_in_status(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Blocked", ["One", "Two", "Three"], formats="[flac, m4b]")
    folder = ws / "outputs" / "blocked"
    (folder / "02 - Two.flac").mkdir(parents=True)
    result = render(ws, book)
    assert result.exit_code == 1, result.output
    assert "02 - Two.flac" in result.output and "is a folder" in result.output
    assert (folder / "01 - One.flac").is_file() and (folder / "03 - Three.flac").is_file()
    assert (folder / "Blocked.m4b").is_file()
    [row] = status(ws)
    [failure] = row["output_failures"]
    assert failure["path"] == str(folder / "02 - Two.flac") and "is a folder" in failure["error"]
    assert temp_files(folder, ws / ".songbatch") == []
    (folder / "02 - Two.flac").rmdir()
    fixed = render(ws, book)
    assert fixed.exit_code == 0, fixed.output
    assert status(ws)[0]["output_failures"] == []


def test_a_file_songbatch_did_not_write_is_never_replaced(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Theirs", ["One", "Two"])
    folder = ws / "outputs" / "theirs"
    folder.mkdir(parents=True)
    (folder / "01 - One.flac").write_bytes(b"the person's own recording")
    result = render(ws, book)
    assert result.exit_code == 1
    assert "songbatch did not write it" in result.output
    assert (folder / "01 - One.flac").read_bytes() == b"the person's own recording"
    assert (folder / "02 - Two.flac").is_file()


def test_an_output_location_that_is_a_file_is_exit_2_before_anything_is_written(
    ws: Path,
) -> None:
    (ws / "books").write_text("a file, not a folder")
    book = write_book(ws / "book.yaml", "Nowhere", ["One"], extra="output: books/nowhere")
    result = render(ws, book)
    assert result.exit_code == 2
    assert "book.yaml:7:9: output:" in result.output and "is not a folder" in result.output
    assert not (ws / ".songbatch").exists()


# --- damaged files are noticed ------------------------------------------------------------------


def test_a_truncated_chunk_is_rendered_again_and_its_outputs_rebuilt(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Truncated", ["One", "Two"], formats="[flac, m4b]")
    assert render(ws, book).exit_code == 0
    [chunk, *_] = sorted((ws / ".songbatch" / "chunks").rglob("*.flac"))
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    verify = invoke("status", "--verify", "--workspace", str(ws))
    assert verify.exit_code == 1 and "1 damaged" in verify.output
    result = render(ws, book)
    assert result.exit_code == 0, result.output
    assert "1 rendered chunk(s) damaged: rendering again" in result.output
    assert "rendered 1 job(s)" in result.output
    assert invoke("status", "--verify", "--workspace", str(ws)).exit_code == 0


def test_a_damaged_output_is_rebuilt(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Rebuilt", ["One"], formats="[flac, m4b]")
    assert render(ws, book).exit_code == 0
    m4b = ws / "outputs" / "rebuilt" / "Rebuilt.m4b"
    good = m4b.read_bytes()
    m4b.write_bytes(good[:1000])
    verify = invoke("status", "--verify", "--workspace", str(ws), "--json")
    assert verify.exit_code == 1
    assert json.loads(verify.output)[0]["verification"]["outputs_damaged"] == [str(m4b)]
    result = render(ws, book)
    assert result.exit_code == 0, result.output
    assert m4b.read_bytes() == good and "rendered 0 job(s)" in result.output


def test_a_deleted_ledger_adopts_the_chunks_on_disk_instead_of_rendering_again(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Lost Ledger", ["One", "Two"], formats="[flac, m4b]")
    assert render(ws, book).exit_code == 0
    folder = ws / "outputs" / "lost-ledger"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    for suffix in ("", "-wal", "-shm"):
        (ws / ".songbatch" / f"ledger.db{suffix}").unlink(missing_ok=True)
    result = render(ws, book)
    assert result.exit_code == 0, result.output
    assert "rendered 0 job(s)" in result.output
    assert "2 chunk(s) found on disk were verified and kept" in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    [row] = status(ws)
    assert row["jobs"]["done"] == 2 and len(row["outputs"]) == 3


def test_a_damaged_ledger_is_one_line_saying_what_to_do(ws: Path) -> None:
    book = write_book(ws / "book.yaml", "Damaged Ledger", ["One"])
    assert render(ws, book).exit_code == 0
    ledger = ws / ".songbatch" / "ledger.db"
    for suffix in ("-wal", "-shm"):
        (ws / ".songbatch" / f"ledger.db{suffix}").unlink(missing_ok=True)
    ledger.write_bytes(b"this is not an SQLite database, it was overwritten" * 100)
    for command in (("render", str(book)), ("status",), ("plan", str(book))):
        result = invoke(*command, "--workspace", str(ws))
        assert result.exit_code == 2, (command, result.output)
        assert "is damaged" in result.output and "mv " in result.output
        assert "internal error" not in result.output


# --- covers ------------------------------------------------------------------------------------


def _jpeg(path: Path, size: tuple[int, int] = (64, 64)) -> Path:
    from PIL import Image

    Image.new("RGB", size, (200, 30, 30)).save(path, "JPEG")
    return path


def test_the_cover_is_copied_at_plan_time_and_a_later_edit_does_not_reach_the_files(
    ws: Path,
) -> None:
    cover = _jpeg(ws / "cover.jpg")
    original = cover.read_bytes()
    book = write_book(ws / "book.yaml", "Covered", ["One", "Two"], extra="cover: cover.jpg")
    assert render(ws, book).exit_code == 0
    copies = list((ws / ".songbatch" / "covers").iterdir())
    assert [p.read_bytes() for p in copies] == [original]
    tags = read_tags(ws / "outputs" / "covered" / "01 - One.flac")
    assert tags.cover_bytes == original


def test_a_truncated_cover_is_refused_by_decoding_it(ws: Path) -> None:
    cover = _jpeg(ws / "cover.jpg", (400, 400))
    cover.write_bytes(cover.read_bytes()[:600])  # JPEG magic bytes intact, image cut short
    book = write_book(ws / "book.yaml", "Bad Cover", ["One"], extra="cover: cover.jpg")
    result = render(ws, book)
    assert result.exit_code == 2
    assert "book.yaml:7:8: cover:" in result.output and "decodes" in result.output
    assert not (ws / ".songbatch").exists()


def test_a_cover_past_the_size_limit_is_refused_with_the_limit_named(ws: Path) -> None:
    cover = _jpeg(ws / "cover.jpg")
    with cover.open("ab") as handle:
        handle.write(b"\0" * (11 * 1024 * 1024))
    book = write_book(ws / "book.yaml", "Huge Cover", ["One"], extra="cover: cover.jpg")
    result = render(ws, book)
    assert result.exit_code == 2
    assert "limited to 10 MB" in result.output


def test_a_ledger_from_a_run_reads_back_as_it_was_written(ws: Path) -> None:
    """The outputs table records size and mtime, so a later check needs no hash."""
    book = write_book(ws / "book.yaml", "Stamped", ["One"])
    assert render(ws, book).exit_code == 0
    with Ledger(ws / ".songbatch" / "ledger.db") as ledger:
        [record] = ledger.outputs(1)
    path = Path(record.path)
    assert record.stamp is not None and record.stamp.size == path.stat().st_size
    assert record.stamp.mtime_ns == path.stat().st_mtime_ns


def test_an_output_location_that_cannot_be_written_is_exit_2(tmp_path: Path) -> None:
    """Root writes anywhere (CI runs as root), so there the CLI runs as an unprivileged user."""
    root = Path(tempfile.mkdtemp(prefix="songbatch-readonly-"))
    root.chmod(0o777)
    synthetic_profile(root, latency_ms=1, devices="cpu:1")
    locked = root / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    book = write_book(root / "book.yaml", "Locked", ["One"], extra="output: locked/book")
    command = ["render", str(book), "--workspace", str(root / "ws")]
    if os.name != "posix" or os.geteuid() != 0:
        result = invoke(*command)
        code, output = result.exit_code, result.output
    else:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop privileges to test this")
        drop = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
        if subprocess.run([*drop, sys.executable, "-c", "pass"], capture_output=True).returncode:
            pytest.skip("this Python cannot start as an unprivileged user here")
        done = subprocess.run(
            [*drop, sys.executable, "-m", "songbatch", *command],
            capture_output=True,
            text=True,
            cwd=root,
            env={**os.environ, "HOME": str(root)},
            timeout=120,
        )
        code, output = done.returncode, done.stdout + done.stderr
    assert code == 2, output
    assert "book.yaml:7:9: output:" in output and f"cannot write in {locked}" in output
    assert not (root / "ws" / ".songbatch").exists()


@pytest.mark.parametrize("master", ["none", "acx"])
def test_a_chunk_that_no_longer_decodes_fails_its_files_and_is_rendered_next_run(
    ws: Path, master: str
) -> None:
    """Bit rot that keeps size and mtime gets past the cheap check; decoding catches it, in
    a raw master's write or, under a preset, while the chunks are fed to mastering."""
    book = write_book(
        ws / "book.yaml", "Rotten", ["One", "Two"], formats="[flac]", extra=f"master: {master}"
    )
    assert render(ws, book).exit_code == 0
    with Ledger(ws / ".songbatch" / "ledger.db") as ledger:
        [job] = ledger.unit_jobs(1, 0)
        chunk = ledger.resolve(str(job.out_path))
    before = chunk.stat()
    data = bytearray(chunk.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 200] = bytes(b ^ 0x5A for b in data[middle : middle + 200])
    chunk.write_bytes(bytes(data))
    os.utime(chunk, ns=(before.st_atime_ns, before.st_mtime_ns))
    for master in (ws / ".songbatch" / "work").iterdir():
        master.unlink()  # so the chapter is assembled from its chunks again
    failed = render(ws, book)
    assert failed.exit_code == 1, failed.output
    assert "rendered again on the next run" in failed.output
    assert (ws / "outputs" / "rotten" / "02 - Two.flac").is_file()
    fixed = render(ws, book)
    assert fixed.exit_code == 0, fixed.output
    assert "rendered 1 job(s)" in fixed.output
