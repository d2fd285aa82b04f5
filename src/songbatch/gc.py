"""`songbatch gc`: chunk files and job rows no planned manifest uses any more, dropped, and the
masters and streams in the work folder that no planned manifest's assembly reads again.

The chunk cache is content-keyed and shared, and re-planning keeps a manifest's old jobs as
cache (ledger/), so edits, removed chapters and previews leave chunks behind (a 56-minute book
is about 150 MB of them); assembly's masters and streams are content-keyed too, and an edited
chapter leaves its old ones behind. What goes:

- job rows no manifest's plan references, with their attempts, and the chunk file each
  recorded; a job that a budget reservation names keeps its row (the reservation refers to it
  and money records are never dropped) and only loses its file;
- files under `.songbatch/chunks/` named like a chunk of a key that has no row at all
  (a run killed between its rename and its commit, then re-planned without that chunk);
- files under `.songbatch/work/` named like a master, a master's loudness or a book format's
  stream (and its frame count) whose key no planned manifest's assembly gives now: the keys
  come from `assemble.work_names`, the derivation the Assembler names its files by (the
  chunks' recorded hashes, the layout, the preset, the encoding), so what a render would read
  again is never removed. A unit with a chunk not rendered has no key yet: its old master
  goes (a new chunk makes a new master).

Nothing else is touched: only paths under those two folders, and only those the ledger recorded
or that are named like a chunk key (`<ab>/<64 hex>.flac`) or a work file's
(`assemble.is_work_name`); a chunk whose key any manifest still plans is never removed,
whatever its state, because the next render adopts it from disk.
Manifests whose YAML file is gone still count as planned (a moved disk comes back); they are
listed, and `--forget-missing` forgets them first so that their chunks go too.

Under the run lock: a render owns the ledger (LedgerBusy, exit 75).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from songbatch.assemble import is_work_name, work_names
from songbatch.ledger import Ledger, damaged_ledger_guard
from songbatch.runlock import RunLock
from songbatch.workspace import Workspace

_CHUNK_NAME = re.compile(r"[0-9a-f]{64}\.flac")
# Manifest rows a preview writes for the length of its run (preview.py); one left by a preview
# that was killed is no planned manifest.
PREVIEW_PREFIX = "preview:"


def is_preview(manifest_path: str) -> bool:
    return manifest_path.startswith(PREVIEW_PREFIX)


def forget_preview_leftovers(ledger: Ledger) -> None:
    """Under the run lock no preview runs, so every preview row there is a killed one's."""
    for path in ledger.manifests_where_path_starts(PREVIEW_PREFIX):
        ledger.forget_manifest(path, because="a killed preview's leftover")


@dataclass
class GcReport:
    dry_run: bool
    jobs_dropped: int = 0  # job rows removed (with their attempts)
    paid_kept: int = 0  # rows kept because a reservation names them; their files went
    files_removed: int = 0
    bytes_freed: int = 0
    orphan_files: int = 0  # of files_removed: chunk-named files with no job row
    work_files: int = 0  # of files_removed: masters and streams no plan's assembly reads
    missing_manifests: list[str] = field(default_factory=list)  # planned, YAML file gone
    forgotten_manifests: list[str] = field(default_factory=list)
    kept_jobs: int = 0  # job rows still planned
    errors: list[str] = field(default_factory=list)  # files that could not be removed


def collect_garbage(
    workspace: Workspace, *, dry_run: bool = False, forget_missing: bool = False
) -> GcReport:
    """Drop (or with `dry_run` only count) what no planned manifest needs. A workspace without a
    ledger has nothing recorded, so nothing is touched: its chunks may be a lost ledger's, which
    the next render adopts."""
    report = GcReport(dry_run=dry_run)
    if not workspace.ledger_path.exists():
        return report
    with (
        RunLock(workspace.lock_path),
        Ledger(workspace.ledger_path) as ledger,
        damaged_ledger_guard(ledger.path),
    ):
        forgotten = _forget(ledger, report, forget_missing=forget_missing)
        _collect(ledger, workspace, report, forgotten)
        _collect_work(ledger, workspace, report, forgotten)
    return report


def _forget(ledger: Ledger, report: GcReport, *, forget_missing: bool) -> list[int]:
    """Manifest rows that stop counting as planned: a killed preview's temporary row always, a
    manifest whose file is gone only when asked. Their ids (forgotten unless a dry run)."""
    ids = []
    for info in ledger.manifests():
        leftover_preview = is_preview(info.path)
        if not leftover_preview and Path(info.path).exists():
            continue
        if not leftover_preview:
            report.missing_manifests.append(info.path)
            if not forget_missing:
                continue
            report.forgotten_manifests.append(info.path)
        ids.append(info.id)
        if not report.dry_run:
            because = "gc: a preview's leftover" if leftover_preview else "gc: its file is gone"
            ledger.forget_manifest(info.path, because=because)
    return ids


def _collect(ledger: Ledger, workspace: Workspace, report: GcReport, forgotten: list[int]) -> None:
    chunks = workspace.chunks_dir.resolve()
    candidates = ledger.unreferenced_jobs()
    if report.dry_run:
        # A dry run forgets nothing: the jobs only forgotten manifests use are counted too, so
        # it tells the truth about what the real run frees.
        dropped = candidates + ledger.jobs_used_only_by(forgotten)
    else:
        dropped = ledger.drop_unreferenced([job.key for job in candidates])
    removed: set[Path] = set()
    for job in dropped:
        if job.paid and job.path is None:
            continue  # kept row, and nothing of it left to free
        if job.paid:
            report.paid_kept += 1
        else:
            report.jobs_dropped += 1
        if job.path is not None and _inside(job.path, chunks) and _remove(job.path, report):
            removed.add(job.path)
    # A dry run's forgotten manifests still reference their jobs: those are not kept.
    would_go = len(dropped) - len(candidates) if report.dry_run else 0
    report.kept_jobs = ledger.referenced_job_count() - would_go
    # Rows that stay: a file named after one of them is kept (a planned job's chunk on disk is
    # adopted by the next render; a paid job's row may be planned again).
    recorded = ledger.recorded_chunk_paths() - removed
    files = [path for path in _chunk_named_files(workspace.chunks_dir) if path not in removed]
    gone = {job.key for job in dropped if not job.paid}
    staying = ledger.known_keys([path.stem for path in files]) - gone
    for path in files:
        if path in recorded or path.stem in staying:
            continue
        if _remove(path, report):
            report.orphan_files += 1


def _collect_work(
    ledger: Ledger, workspace: Workspace, report: GcReport, forgotten: list[int]
) -> None:
    folder = workspace.work_dir
    if not folder.is_dir():
        return
    live: set[str] = set()
    for info in ledger.manifests():
        if info.id not in forgotten:  # a dry run's forgotten manifests are still in the ledger
            live |= work_names(ledger, info)
    _remove_work_files(folder, live, report)
    # Sections outlive a render only when it was killed: they save the next render encoding
    # them again, and no plan needs one, so gc (never run beside a render) takes them all.
    _remove_work_files(workspace.sections_dir, set(), report)


def _remove_work_files(folder: Path, live: set[str], report: GcReport) -> None:
    if not folder.is_dir():
        return
    for entry in sorted(folder.iterdir()):
        if (
            is_work_name(entry.name)
            and entry.name not in live
            and entry.is_file()
            and not entry.is_symlink()
            and _remove(entry, report)
        ):
            report.work_files += 1


def _chunk_named_files(folder: Path) -> list[Path]:
    """`<ab>/<key>.flac` files in the chunk folder whose name is a chunk key's; nothing else
    (a person's file there, a link, a folder) is ever a candidate."""
    if not folder.is_dir():
        return []
    found = []
    for sub in sorted(folder.iterdir()):
        if not sub.is_dir() or sub.is_symlink() or not re.fullmatch(r"[0-9a-f]{2}", sub.name):
            continue
        for entry in sorted(sub.iterdir()):
            if (
                _CHUNK_NAME.fullmatch(entry.name)
                and entry.name.startswith(sub.name)
                and entry.is_file()
                and not entry.is_symlink()
            ):
                found.append(entry)
    return found


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder) and not path.is_symlink()
    except OSError:
        return False


def _remove(path: Path, report: GcReport) -> bool:
    """Remove (a dry run: only measure) one file; True when it counts as freed."""
    try:
        size = path.stat().st_size
        if not report.dry_run:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        report.errors.append(f"{path}: {exc.strerror or exc}")
        return False
    report.files_removed += 1
    report.bytes_freed += size
    return True
