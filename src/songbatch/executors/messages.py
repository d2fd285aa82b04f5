"""What the coordinator and a worker process say to each other over their pipe, as types.

Each message is a small frozen dataclass (pickled by multiprocessing), so a field is named where
it is sent and where it is read, and mypy checks both ends. The coordinator sends `Jobs` (one
engine call's tickets) and `Stop`; a worker answers with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

from songbatch.engines.base import JobRequest


@dataclass(frozen=True)
class Ticket:
    """One leased job, as a worker sees it."""

    key: str
    token: int
    spec_id: str
    request: JobRequest
    tmp_path: str
    voice_path: str | None = None


# ---------------------------------------------------------------- coordinator -> worker


@dataclass(frozen=True)
class Jobs:
    """One engine call's jobs, in the order the engine gets them."""

    tickets: list[Ticket]


@dataclass(frozen=True)
class Stop:
    """Finish what is written and leave."""


ToWorker: TypeAlias = Jobs | Stop

# ---------------------------------------------------------------- worker -> coordinator


@dataclass(frozen=True)
class Ready:
    pid: int


@dataclass(frozen=True)
class Loaded:
    """An engine is loaded (the first call that needed it), and how many jobs it takes at once."""

    spec_id: str
    seconds: float
    batch_limit: int


@dataclass(frozen=True)
class BatchLimit:
    """The engine takes a different number of jobs per call now (a measured peak)."""

    spec_id: str
    limit: int


@dataclass(frozen=True)
class Started:
    """The engine call for these leases began."""

    tokens: list[int]


@dataclass(frozen=True)
class Progress:
    """Still rendering (at most one a second): what keeps a long render's lease alive."""


@dataclass(frozen=True)
class RenderedFile:
    """A job's audio, written and synced at its ticket's temp path."""

    sha256: str
    duration_ms: int
    engine_ms: int  # the engine call's time per job, without the write
    render_ms: int  # engine and write
    info: dict[str, Any] = field(default_factory=dict)  # the engine's notes (seed, QA ratio, ...)


@dataclass(frozen=True)
class Rendered:
    token: int
    file: RenderedFile


@dataclass(frozen=True)
class Failed:
    token: int
    error: str
    retryable: bool  # another attempt may help
    transient: bool  # the machine's fault: set aside uncharged


@dataclass(frozen=True)
class DeviceGone:
    """A sticky device error: the worker's jobs were reported Failed (transient) and it exits."""

    reason: str


@dataclass(frozen=True)
class Fatal:
    """An engine could not be loaded: the run stops with this error."""

    token: int
    error: str


FromWorker: TypeAlias = (
    Ready | Loaded | BatchLimit | Started | Progress | Rendered | Failed | DeviceGone | Fatal
)
