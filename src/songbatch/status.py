"""What the ledger says about each manifest: jobs per state, audio rendered, outputs written."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from songbatch.ledger import Ledger
from songbatch.workspace import Workspace

STATES = ("pending", "leased", "done", "failed")


@dataclass
class ManifestStatus:
    path: str
    title: str
    kind: str
    profile: str
    planned_utc: str
    jobs: dict[str, int] = field(default_factory=dict)
    chars: int = 0
    est_ms: int = 0
    rendered_ms: int = 0
    outputs: list[str] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.jobs.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"total": self.total}


def manifest_status(workspace: Workspace, paths: Sequence[Path] = ()) -> list[ManifestStatus]:
    """Read-only: a workspace with no ledger yet has nothing to report (and gets none made)."""
    if not workspace.ledger_path.exists():
        return []
    with Ledger(workspace.ledger_path) as ledger:
        wanted = [str(Path(p).resolve()) for p in paths] or None
        infos = ledger.manifests(wanted)
        if not infos:
            return []
        by_id = {
            info.id: ManifestStatus(
                path=info.path,
                title=info.title,
                kind=info.kind,
                profile=info.profile,
                planned_utc=info.planned_utc,
                jobs=dict.fromkeys(STATES, 0),
            )
            for info in infos
        }
        for count in ledger.state_counts(list(by_id)):
            status = by_id[count.manifest_id]
            status.jobs[count.state] = count.jobs
            status.chars += count.chars
            status.est_ms += count.est_ms
            status.rendered_ms += count.duration_ms
        for info in infos:
            by_id[info.id].outputs = [row["path"] for row in ledger.outputs(info.id)]
        for key, manifest_id, unit, error in ledger.failed_jobs(list(by_id)):
            units = next(i for i in infos if i.id == manifest_id).assembly["units"]
            by_id[manifest_id].failed.append(
                {"job": key, "unit": units[unit]["title"], "error": error}
            )
        return list(by_id.values())


def retry_jobs(workspace: Workspace, paths: Sequence[Path], *, force: bool) -> int:
    """Failed jobs of these manifests (all planned ones when none named) go back to pending."""
    if not workspace.ledger_path.exists():
        return 0
    with Ledger(workspace.ledger_path) as ledger:
        wanted = [str(Path(p).resolve()) for p in paths] or None
        ids = [info.id for info in ledger.manifests(wanted)]
        return ledger.retry(ids, force=force) if ids else 0
