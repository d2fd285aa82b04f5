"""Checks of the reliability contract, shared by the chaos and crash-point tests."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from pathlib import Path

import soundfile
from mutagen.mp4 import MP4

from songbatch.ledger import Ledger


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def is_temp(path: Path) -> bool:
    return path.name.endswith(".tmp") or ".tmp." in path.name


def check_audio_file(path: Path) -> None:
    """Raise if a file at a final path is torn: every frame its header promises must decode."""
    if path.suffix in {".m4b", ".m4a"}:
        info = MP4(path).info
        if info.length <= 0:
            raise ValueError(f"{path}: empty mp4")
        return
    if path.suffix in {".flac", ".wav"}:
        with soundfile.SoundFile(path) as handle:
            expected = handle.frames
            data = handle.read(dtype="float32")
        if len(data) != expected or expected == 0:
            raise ValueError(f"{path}: {len(data)} of {expected} frames")


def temp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders if folder.exists() for p in folder.rglob("*") if is_temp(p)]


def verify_done_exactly_once(workspace: Path) -> dict[str, int]:
    """Every planned job done once, its file present with the recorded sha256; no temp files;
    every recorded output valid with its recorded sha256; integrity_check ok."""
    state = workspace / ".songbatch"
    with Ledger(state / "ledger.db") as ledger:
        assert ledger.integrity_ok()
        jobs = ledger.conn.execute(
            "SELECT key, state, out_path, sha256 FROM jobs"
            " WHERE key IN (SELECT job_key FROM manifest_jobs)"
        ).fetchall()
        done = Counter(
            row[0]
            for row in ledger.conn.execute("SELECT job_key FROM attempts WHERE outcome = 'done'")
        )
        for key, job_state, out_path, sha in jobs:
            assert job_state == "done", (key, job_state)
            assert done[key] == 1, (key, done[key])
            path = ledger.resolve(out_path)
            assert sha256_of(path) == sha, key
            check_audio_file(path)
        outputs = ledger.conn.execute("SELECT path, sha256 FROM outputs").fetchall()
        for path_text, sha in outputs:
            path = Path(path_text)
            assert sha256_of(path) == sha, path
            check_audio_file(path)
    leftovers = temp_files(state, workspace / "outputs")
    assert leftovers == [], leftovers
    return {"jobs": len(jobs), "outputs": len(outputs)}


class Watcher(threading.Thread):
    """Samples every final path while runs are killed around it: no torn file may ever show."""

    def __init__(self, *folders: Path) -> None:
        super().__init__(daemon=True)
        self.folders = folders
        self.torn: list[str] = []
        self.checked = 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            for folder in self.folders:
                if not folder.exists():
                    continue
                for path in list(folder.rglob("*")):
                    if (
                        not path.is_file()
                        or is_temp(path)
                        or path.suffix
                        not in {
                            ".flac",
                            ".wav",
                            ".m4b",
                        }
                    ):
                        continue
                    try:
                        check_audio_file(path)
                        self.checked += 1
                    except FileNotFoundError:
                        continue
                    except Exception as exc:
                        self.torn.append(f"{path.name}: {exc}")
            time.sleep(0.02)

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)


def state_bytes(workspace: Path) -> dict[str, bytes]:
    """Every file under the workspace's .songbatch that a write would change. A reader of a WAL
    database has SQLite make its -shm index and an empty -wal if they are missing (it must, to
    see a render's commits safely); those hold no ledger data, so an empty -wal counts as none."""
    state = workspace / ".songbatch"
    files = {
        str(p.relative_to(state)): p.read_bytes()
        for p in sorted(state.rglob("*"))
        if p.is_file() and not p.name.endswith("-shm")
    }
    if files.get("ledger.db-wal") == b"":
        del files["ledger.db-wal"]
    return files
