"""Where state lives: `<workspace>/.songbatch/` holds the ledger, run lock and chunk cache."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from songbatch.fsutil import fsync_dir, fsync_file


@dataclass(frozen=True)
class Workspace:
    root: Path

    @property
    def state_dir(self) -> Path:
        return self.root / ".songbatch"

    @property
    def ledger_path(self) -> Path:
        return self.state_dir / "ledger.db"

    @property
    def lock_path(self) -> Path:
        return self.state_dir / "run.lock"

    @property
    def id_path(self) -> Path:
        return self.state_dir / "workspace.id"

    @property
    def chunks_dir(self) -> Path:
        """Content-keyed cache of rendered jobs, shared by every manifest in the workspace."""
        return self.state_dir / "chunks"

    @property
    def work_dir(self) -> Path:
        """Intermediate assembly files (chapter masters)."""
        return self.state_dir / "work"

    @property
    def sections_dir(self) -> Path:
        """Sections of chapter streams encoded as their chunks arrive (sections.py): each is
        removed once its chapter's stream is whole, so what is left is a killed run's, kept for
        the next run to reuse."""
        return self.work_dir / "sections"

    @property
    def tmp_dir(self) -> Path:
        """Renders in progress; the same filesystem as chunks/, so publishing is a rename."""
        return self.state_dir / "tmp"

    @property
    def voices_dir(self) -> Path:
        """Voice references, copied at plan time and named by their sha256."""
        return self.state_dir / "voices"

    @property
    def covers_dir(self) -> Path:
        """Cover images, copied at plan time and named by their sha256."""
        return self.state_dir / "covers"

    @property
    def runs_dir(self) -> Path:
        """One summary per run, `<run-id>.json`."""
        return self.state_dir / "runs"

    def voice_path(self, sha256: str) -> Path:
        return self.voices_dir / sha256

    def cover_path(self, sha256: str) -> Path:
        return self.covers_dir / sha256

    def tmp_path(self, key: str, token: int) -> Path:
        """Where the holder of lease `token` writes job `key` before it is published."""
        return self.tmp_dir / f"{key}.{token}.tmp"

    def chunk_path(self, key: str) -> Path:
        return self.chunks_dir / key[:2] / f"{key}.flac"

    def make_state_dir(self) -> None:
        """Private (0700): it holds the book's text, voice clips and the ledger."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(mode=0o700, exist_ok=True)

    def owner_id(self) -> str:
        """This workspace's id, made on first use: it names the temp files this workspace writes
        into output folders, so a run sweeps its own leftovers and never another's."""
        try:
            text = self.id_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            text = ""
        if text:
            return text
        self.make_state_dir()
        text = secrets.token_hex(8)
        tmp = self.id_path.with_name(f".workspace.id.{os.getpid()}.tmp")
        try:
            tmp.write_text(text + "\n", encoding="ascii")
            fsync_file(tmp)
            os.replace(tmp, self.id_path)
            fsync_dir(self.state_dir)
        finally:
            tmp.unlink(missing_ok=True)
        return text


def resolve_workspace(explicit: Path | str | None = None) -> Workspace:
    """`--workspace DIR` wins, then `SONGBATCH_HOME`, then the current folder."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get("SONGBATCH_HOME"):
        root = Path(os.environ["SONGBATCH_HOME"])
    else:
        root = Path.cwd()
    return Workspace(root.expanduser().resolve())
