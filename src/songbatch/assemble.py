"""Finished jobs -> chapter and track files, and a book's .m4b, published like chunks are.

Reads only the ledger (the assembly spec the planner stored, and the done jobs' files). Each
chapter is first streamed into a content-keyed FLAC master; every format is encoded from it, so
memory stays flat however long the book is and an unchanged chapter is never assembled twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import soundfile

from songbatch import audio
from songbatch.errors import SongbatchError
from songbatch.fsutil import file_sha256, remove_quietly, replace_durably, temp_sibling
from songbatch.ledger import Ledger, ManifestInfo, UnitJob
from songbatch.tagging import Tags
from songbatch.workspace import Workspace

EXTENSIONS = {"m4b": "m4b", "mp3": "mp3", "flac": "flac", "opus": "opus", "wav": "wav"}


class AssemblyError(SongbatchError):
    """A chapter or track could not be assembled (a chunk file is missing or damaged)."""


@dataclass(frozen=True)
class Master:
    path: Path
    duration_ms: int
    inputs_sha256: str


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tags(spec: dict[str, Any], title: str, track: tuple[int, int] | None = None) -> Tags:
    """A chapter's or track's tags (with its number), or the whole book's (without)."""
    base = spec["tags"]
    return Tags(
        title=title,
        album=base.get("album"),
        artist=base.get("artist"),
        album_artist=base.get("album_artist"),
        narrator=base.get("narrator"),
        track=track,
        disc=None if track is None else (1, 1),
        genre=base.get("genre"),
        year=base.get("year"),
        language=base.get("language"),
        description=base.get("description"),
        comment=base.get("comment"),
        cover=None if spec.get("cover") is None else Path(spec["cover"]),
    )


class Assembler:
    def __init__(self, ledger: Ledger, workspace: Workspace) -> None:
        self.ledger = ledger
        self.workspace = workspace

    # ------------------------------------------------------------------ units

    def assemble_unit(self, info: ManifestInfo, unit: int) -> list[Path]:
        """Write the unit's file in every format but m4b; returns the files (re)written."""
        master = self.master(info, unit)
        spec = info.assembly
        meta = spec["units"][unit]
        written = []
        for fmt in spec["formats"]:
            if fmt == "m4b":
                continue
            final = Path(spec["output_dir"]) / f"{meta['file']}.{EXTENSIONS[fmt]}"
            tags = _tags(spec, meta["title"], track=(unit + 1, len(spec["units"])))
            if self._publish(info, unit, fmt, [master], final, tags, chapters=None):
                written.append(final)
        return written

    def master(self, info: ManifestInfo, unit: int) -> Master:
        jobs = self.ledger.unit_jobs(info.id, unit)
        lead_in_ms = int(info.assembly.get("lead_in_ms", 0))
        inputs = _digest(
            {"lead_in_ms": lead_in_ms, "jobs": [(j.sha256, j.pause_after_ms) for j in jobs]}
        )
        path = self.workspace.work_dir / f"{inputs}.flac"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            segments = self._segments(jobs, lead_in_ms)
            first = self._chunk_path(jobs[0])
            probe = soundfile.info(str(first))
            audio.assemble_master(
                segments, path, sample_rate=probe.samplerate, channels=probe.channels
            )
        return Master(path=path, duration_ms=audio.audio_duration_ms(path), inputs_sha256=inputs)

    def _segments(self, jobs: list[UnitJob], lead_in_ms: int) -> list[audio.Segment]:
        segments = [audio.Segment(silence_s=lead_in_ms / 1000)] if lead_in_ms else []
        for job in jobs:
            segments.append(audio.Segment(path=self._chunk_path(job)))
            if job.pause_after_ms:
                segments.append(audio.Segment(silence_s=job.pause_after_ms / 1000))
        return segments

    def _chunk_path(self, job: UnitJob) -> Path:
        if job.state != "done" or job.out_path is None:
            raise AssemblyError(f"job {job.key[:12]} is not rendered yet")
        path = self.ledger.resolve(job.out_path)
        if not path.exists():
            raise AssemblyError(
                f"chunk {path} is missing; `songbatch retry --force` renders it again"
            )
        return path

    # ------------------------------------------------------------------ the book

    def assemble_book(self, info: ManifestInfo) -> Path | None:
        """The .m4b with a chapter mark per chapter; None if none is asked for or it is current."""
        spec = info.assembly
        if "m4b" not in spec["formats"]:
            return None
        masters = [self.master(info, unit["unit"]) for unit in spec["units"]]
        marks, start = [], 0
        for unit, master in zip(spec["units"], masters, strict=True):
            marks.append(audio.ChapterMark(unit["title"], start, start + master.duration_ms))
            start += master.duration_ms
        tags = _tags(spec, spec["tags"]["album"])
        final = Path(spec["output_dir"]) / f"{spec['book_file']}.m4b"
        written = self._publish(info, None, "m4b", masters, final, tags, chapters=marks)
        return final if written else None

    # ------------------------------------------------------------------ publishing

    def _publish(
        self,
        info: ManifestInfo,
        unit: int | None,
        fmt: str,
        masters: list[Master],
        final: Path,
        tags: Tags,
        chapters: list[audio.ChapterMark] | None,
    ) -> bool:
        """Encode to a temp file beside the target, tag, sync, replace: False if up to date."""
        inputs = _digest(
            {
                "masters": [m.inputs_sha256 for m in masters],
                "format": fmt,
                "tags": {k: str(v) for k, v in vars(tags).items()},
                "cover": info.assembly.get("cover_sha256"),
                "chapters": None if chapters is None else [vars(c) for c in chapters],
            }
        )
        if final.exists() and self.ledger.output_current(str(final), inputs):
            return False
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_sibling(final)
        try:
            audio.encode(
                [m.path for m in masters],
                tmp,
                fmt,  # type: ignore[arg-type]
                tags=tags,
                cover=tags.cover,
                chapters=chapters,
            )
            sha = file_sha256(tmp)
            replace_durably(tmp, final)
        finally:
            remove_quietly(tmp)
        self.ledger.record_output(
            path=str(final),
            manifest_id=info.id,
            unit=unit,
            fmt=fmt,
            inputs_sha256=inputs,
            sha256=sha,
            duration_ms=sum(m.duration_ms for m in masters),
        )
        return True
