"""Where state lives: `<workspace>/.songbatch/` holds the ledger, run lock and chunk cache."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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
    def chunks_dir(self) -> Path:
        """Content-keyed cache of rendered jobs, shared by every manifest in the workspace."""
        return self.state_dir / "chunks"

    @property
    def work_dir(self) -> Path:
        """Intermediate assembly files (chapter masters)."""
        return self.state_dir / "work"

    @property
    def tmp_dir(self) -> Path:
        """Renders in progress; the same filesystem as chunks/, so publishing is a rename."""
        return self.state_dir / "tmp"

    def tmp_path(self, key: str, token: int) -> Path:
        """Where the holder of lease `token` writes job `key` before it is published."""
        return self.tmp_dir / f"{key}.{token}.tmp"

    def chunk_path(self, key: str) -> Path:
        return self.chunks_dir / key[:2] / f"{key}.flac"


def resolve_workspace(explicit: Path | str | None = None) -> Workspace:
    """`--workspace DIR` wins, then `SONGBATCH_HOME`, then the current folder."""
    if explicit is not None:
        root = Path(explicit)
    elif os.environ.get("SONGBATCH_HOME"):
        root = Path(os.environ["SONGBATCH_HOME"])
    else:
        root = Path.cwd()
    return Workspace(root.expanduser().resolve())
