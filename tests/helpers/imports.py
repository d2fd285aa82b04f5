"""`songbatch import` run in-process, the manifest it wrote loaded as a render would."""

from __future__ import annotations

from pathlib import Path

from helpers.examples import invoke
from songbatch.manifest import Audiobook, load_manifest


def imported(source: Path, manifest: Path, *options: str) -> Audiobook:
    """`songbatch import SOURCE -o MANIFEST OPTIONS...`, asserted to succeed; the manifest."""
    result = invoke("import", str(source), "-o", str(manifest), *options)
    assert result.exit_code == 0, result.output
    book = load_manifest(manifest).manifest
    assert isinstance(book, Audiobook)
    return book
