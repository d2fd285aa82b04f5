"""Typed errors: each carries what a person needs; the CLI makes it one line and an exit code."""

from __future__ import annotations

from pathlib import Path


def install_hint(extra: str) -> str:
    """The command that installs an optional extra, the same as the README's: songbatch is
    installed from its folder (a clone), not from a package index."""
    return f"pip install '.[{extra}]' in the songbatch folder"


class SongbatchError(Exception):
    """Base class; `exit_code` is what the CLI exits with (see DESIGN.md)."""

    exit_code = 1


class InputError(SongbatchError):
    """Bad input or usage: nothing was written."""

    exit_code = 2


class ManifestError(InputError):
    """A manifest, profile or file it names is wrong; reads `file:line:col: field: message`."""

    def __init__(
        self,
        file: Path | str,
        message: str,
        *,
        line: int | None = None,
        col: int | None = None,
        field: str | None = None,
    ) -> None:
        self.file = Path(file)
        self.line = line
        self.col = col
        self.field = field
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = str(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ProfileError(ManifestError):
    """A profile file is wrong or cannot be found."""


class EngineUnavailable(InputError):
    """The engine a profile names cannot be used here (extra not installed, weights missing)."""


class EngineError(SongbatchError):
    """A render failed. `retryable` says whether another attempt may succeed; `transient` that
    the cause is the environment's (disk full, out of memory, network), not the job's: the job
    is set aside without being charged an attempt (ratelimit.TransientPolicy)."""

    def __init__(self, message: str, *, retryable: bool = True, transient: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable or transient
        self.transient = transient


class LedgerDamaged(InputError):
    """The ledger file is not a readable SQLite database. Never repaired silently: it holds
    open budget reservations, and guessing them away could spend past a cap."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(
            f"the ledger {path} is damaged ({detail}): move it aside"
            f" (mv '{path}' '{path}.damaged') and run again; the rendered chunks beside it are"
            " checked and kept, not rendered again"
        )


class LedgerUnavailable(InputError):
    """The ledger cannot be opened: not a file, no permission, a read-only or full disk."""

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        if path.is_dir():
            hint = "a folder is in its place: move it aside"
        else:
            hint = (
                "check that this account may read and write it and its folder, and that the"
                " disk is neither full nor read-only"
            )
        super().__init__(f"cannot open the ledger {path} ({detail}): {hint}")


class LedgerOutdated(InputError):
    """A command that only reads (plan, status, cost, doctor) found a ledger this version would
    have to migrate first; it does not, so looking never changes the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(
            f"the ledger {path} was written by an earlier songbatch (or is empty): `songbatch"
            " render` upgrades it; commands that only look (plan, status, cost, doctor) never"
            " write it"
        )


class LedgerBusy(SongbatchError):
    """Another live run holds this ledger."""

    exit_code = 75


class RemoteRefused(SongbatchError):
    """The remote API refused the credentials (401/403): every call would fail the same way, so
    the run stops; no job is charged for it and the rest stays pending."""


class Interrupted(SongbatchError):
    """Ctrl-C or SIGTERM: work in flight went back to pending, finished work was kept."""

    exit_code = 130


class BudgetExceeded(SongbatchError):
    """The next job does not fit under the spend cap; the rest stays pending."""

    exit_code = 3
