"""An assembly spec with no units, for the tests and benchmarks that write a plan's jobs
into a ledger by hand (nothing is ever assembled from it)."""

from __future__ import annotations

from pathlib import Path

from songbatch.assemblyspec import AssemblySpec, SpecTags


def bare_spec(title: str = "T") -> AssemblySpec:
    return AssemblySpec(
        kind="audiobook",
        output_dir=Path("/nonexistent-songbatch-outputs"),
        formats=(),
        cover=None,
        cover_sha256=None,
        tags=SpecTags(
            album=title,
            year=None,
            description=None,
            comment="",
            artist=None,
            album_artist=None,
            genre=None,
        ),
        lead_in_ms=0,
        book_file=title,
        units=(),
    )
