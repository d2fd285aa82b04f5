"""What the last import into a manifest wrote, kept beside its chapter texts in
`.songbatch-import.json`: each file's SHA-256 as written (a file that no longer has it was
edited by its person, and is kept) and each chapter's file with the source's title for it (so
a re-import finds a chapter's file by the source's title, whatever the person renamed it to
in the manifest, and knows a chapter the person removed from the manifest from a new one)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

RECORD_NAME = ".songbatch-import.json"


@dataclass
class Record:
    files: dict[str, str] = field(default_factory=dict)  # manifest-relative path -> sha256
    chapters: list[tuple[str, str]] = field(default_factory=list)  # (path, source title)
    source: str | None = None  # the file name of the book last imported

    def file_of(self, title: str, taken: set[str]) -> str | None:
        """The file the last import gave the source's chapter `title`, unless taken."""
        return next((f for f, t in self.chapters if t == title and f not in taken), None)

    def to_json(self) -> bytes:
        data = {
            "version": 1,
            "source": self.source,
            "files": dict(sorted(self.files.items())),
            "chapters": [{"file": f, "source_title": t} for f, t in self.chapters],
        }
        return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def load_record(path: Path) -> Record:
    """The record at `path`; an empty one when there is none or it cannot be read (then every
    file is treated as the person's: nothing is overwritten on its word)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        files = {str(k): str(v) for k, v in data["files"].items()}
        chapters = [(str(c["file"]), str(c["source_title"])) for c in data["chapters"]]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return Record()
    source = data.get("source")
    return Record(files, chapters, source if isinstance(source, str) else None)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
