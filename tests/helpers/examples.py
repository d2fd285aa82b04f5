"""The shipped example book and album in a test's workspace, and the CLI run in-process on them:
what the render tests (mastering, encoding, tags, ReplayGain, credits, subtitles, parts, fades,
mp3-book) share."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner, Result

from helpers.books import REPO
from songbatch.cli.main import app

__all__ = [
    "ALBUM_DIR",
    "BOOK_DIR",
    "REPO",
    "example_album",
    "example_book",
    "invoke",
    "render_offline",
]

BOOK_DIR = "the-lighthouse-keeper-s-almanac"  # the example book's folder under outputs/
ALBUM_DIR = "harbour-lights"  # the example album's
BOOK_FORMATS = "formats: [m4b, mp3]"  # the example book's formats line, as shipped
ALBUM_FORMATS = "formats: [mp3, flac]"  # the example album's

runner = CliRunner()


def invoke(*args: str) -> Result:
    """`songbatch ARGS...` in-process; an exception the CLI does not catch fails the test."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def _example(workspace: Path, name: str, shipped: str, replacement: str) -> Path:
    """The shipped manifests/ (copied into `workspace` over what it has there) with
    `name`'s `shipped` line, which must be there, replaced."""
    manifests = workspace / "manifests"
    shutil.copytree(REPO / "manifests", manifests, dirs_exist_ok=True)
    text = (REPO / "manifests" / name).read_text(encoding="utf-8")
    assert shipped in text, f"{name} no longer has {shipped!r}"
    path = manifests / name
    path.write_text(text.replace(shipped, replacement), encoding="utf-8")
    return path


def example_book(workspace: Path, *, formats: str = "[m4b, mp3]", extra: str = "") -> Path:
    """The example book in `workspace`/manifests, its formats `formats` and `extra` (YAML,
    starting with its own newline) right after them, on line 14 on."""
    return _example(workspace, "example-book.yaml", BOOK_FORMATS, f"formats: {formats}{extra}")


def example_album(workspace: Path, *, formats: str = "[mp3, flac]", extra: str = "") -> Path:
    """The example album in `workspace`/manifests, as `example_book` writes the book."""
    return _example(workspace, "example-album.yaml", ALBUM_FORMATS, f"formats: {formats}{extra}")


def render_offline(workspace: Path, manifest: Path, code: int = 0) -> Result:
    """`songbatch render MANIFEST --workspace WORKSPACE --profile offline`, asserted to exit
    with `code` (its output shown when it does not)."""
    result = invoke("render", str(manifest), "--workspace", str(workspace), "--profile", "offline")
    assert result.exit_code == code, result.output
    return result
