"""The official `replicate` client, wrapped: every call returns plain data or raises CallFailed
with a class the executor acts on (rate limited, transient, unknown outcome, fatal, bad output),
or RemoteRefused when the API refuses the credentials (401/403): then every call would fail the
same way, so the run stops.

Why a wrapper: the client never retries a create (POST), hides the 429's Retry-After header,
and raises pydantic's ValidationError on a prediction whose status is `aborted`. Each of those is
handled here once. The token comes from REPLICATE_API_TOKEN and the base URL from
REPLICATE_BASE_URL, read by the client itself.

Thread-safe: the executor calls it from a pool of threads at once. httpx.Client is (one
connection pool, locked), the replicate client holds no per-call state beyond it, and the one
thing this wrapper keeps between a response and its error, the 429's Retry-After, is per thread.

Text from the endpoint (error details, a prediction's `error`, exception text) goes through
`redact` where CallFailed and PredictionState are built, the only two ways it leaves this module,
so no message stored in the ledger or printed can carry the API token.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
import threading
import urllib.parse
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx
import numpy as np
import soundfile as sf

from songbatch.engines.base import RenderResult
from songbatch.errors import RemoteRefused
from songbatch.remote.preflight import check_client

# bad-output: the prediction's output itself is unusable (the job's problem, not the network's).
ErrorClass = Literal["rate-limited", "transient", "unknown-outcome", "fatal", "bad-output"]
TERMINAL = ("succeeded", "failed", "canceled", "aborted")
REDACTED = "[redacted]"
# Replicate's tokens (r8_ and 37 characters today), and any credential after an auth scheme.
_TOKEN_LIKE = re.compile(r"r8_[A-Za-z0-9_-]{20,}")
_AUTH_VALUE = re.compile(r"\b((?i:bearer)|Token)(\s+)[A-Za-z0-9._~+/=-]{8,}")


def redact(text: str) -> str:
    """`text` without the API token: the current REPLICATE_API_TOKEN value, anything shaped like
    a Replicate token, and the value after "Bearer" or "Token" become "[redacted]". Servers and
    proxies echo request headers in error pages; this keeps them out of the ledger and the
    terminal."""
    token = os.environ.get("REPLICATE_API_TOKEN", "").strip()
    if len(token) >= 4:  # a blank or tiny value would redact ordinary text
        text = text.replace(token, REDACTED)
    text = _TOKEN_LIKE.sub(REDACTED, text)
    return _AUTH_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)


class CallFailed(Exception):
    def __init__(
        self, kind: ErrorClass, message: str, *, status: int | None = None, hint_s: float | None
    ) -> None:
        super().__init__(redact(message))
        self.kind = kind
        self.status = status
        self.hint_s = hint_s


@dataclass(frozen=True)
class PredictionState:
    id: str
    status: str  # starting | processing | succeeded | failed | canceled | aborted
    model: str | None
    version: str | None
    input: dict[str, Any]
    output: Any
    error: str | None
    predict_s: float | None
    created_at: float | None  # epoch seconds

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


class Api(Protocol):
    """The calls the executor makes: ReplicateApi, or a test's in-process stand-in."""

    def create(self, ref: str, model_input: dict[str, Any]) -> PredictionState: ...
    def get(self, prediction_id: str) -> PredictionState: ...
    def cancel(self, prediction_id: str) -> None: ...
    def recent(self, max_pages: int = 5) -> Iterator[PredictionState]: ...
    def upload(self, path: Path) -> tuple[str, str | None]: ...
    def fetch(self, output: Any) -> RenderResult: ...
    def close(self) -> None: ...


class ReplicateApi:
    def __init__(
        self,
        *,
        timeout_s: float,
        base_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        connections: int = 8,
    ) -> None:
        """`transport` replaces the client's network layer under its own retry layer (tests
        inject network faults there, such as a DNS outage). `connections`: calls at once, each
        of which keeps its connection open between calls."""
        check_client()
        from replicate.client import Client

        self._local = threading.local()
        timeout = httpx.Timeout(timeout_s, connect=min(10.0, timeout_s))
        # One more than the pool's threads: the coordinator's own calls (an upload, a cancel).
        limits = httpx.Limits(max_keepalive_connections=connections + 1)
        network = transport or httpx.HTTPTransport(limits=limits)
        self.client = Client(
            base_url=base_url,
            timeout=timeout,
            event_hooks={"response": [self._on_response]},
            transport=network,
        )
        # Built now: the client builds its httpx.Client on first use, and two threads making
        # the first calls together would each build one.
        _ = self.client._client
        self._download = httpx.Client(timeout=timeout, follow_redirects=True, limits=limits)

    def close(self) -> None:
        self._download.close()

    def _on_response(self, response: httpx.Response) -> None:
        # The client drops headers when it raises; keep the 429's hint for _classify. httpx runs
        # this hook on the thread that made the call, so each thread sees its own.
        if response.status_code == 429:
            self._local.retry_after = response.headers.get("retry-after")

    # ------------------------------------------------------------------ calls

    def create(self, ref: str, model_input: dict[str, Any]) -> PredictionState:
        """One POST, never retried here: the caller owns pacing and reconciliation."""
        self._local.retry_after = None
        owner_name, _, version = ref.partition(":")
        try:
            if version:
                prediction = self.client.predictions.create(version=version, input=model_input)
            else:
                prediction = self.client.models.predictions.create(
                    model=owner_name, input=model_input
                )
        except Exception as exc:
            raise self._classify(exc, posting=True) from exc
        return _state(dict(prediction))

    def get(self, prediction_id: str) -> PredictionState:
        import pydantic
        from pydantic import v1 as pydantic_v1

        try:
            return _state(dict(self.client.predictions.get(prediction_id)))
        except (pydantic.ValidationError, pydantic_v1.ValidationError):
            # `aborted` is not in the client's status Literal: read the raw reply instead. The
            # client builds its models with pydantic.v1 when pydantic 2 is installed, so the
            # error is pydantic.v1's, which pydantic.ValidationError does not catch.
            return _state(self._raw("GET", f"/v1/predictions/{prediction_id}"))
        except Exception as exc:
            raise self._classify(exc, posting=False) from exc

    def cancel(self, prediction_id: str) -> None:
        try:
            self._raw("POST", f"/v1/predictions/{prediction_id}/cancel")
        except CallFailed:
            raise
        except Exception as exc:
            raise self._classify(exc, posting=False) from exc

    def recent(self, max_pages: int = 5) -> Iterator[PredictionState]:
        """Predictions newest first. Raw pages: one aborted prediction would make the client's
        typed page fail to parse as a whole."""
        cursor: str | None = "/v1/predictions"
        for _ in range(max_pages):
            if cursor is None:
                return
            page = self._raw("GET", cursor)
            for item in page.get("results") or []:
                yield _state(item)
            cursor = page.get("next")

    def upload(self, path: Path) -> tuple[str, str | None]:
        """Upload a file once; returns its URL and when it expires."""
        try:
            file = self.client.files.create(path)
        except Exception as exc:
            raise self._classify(exc, posting=True) from exc
        return str(file.urls["get"]), file.expires_at

    def fetch(self, output: Any) -> RenderResult:
        """Download the first audio output at once (Replicate deletes outputs after about an
        hour) and check that it decodes."""
        url = _first_url(output)
        if url is None:
            raise CallFailed(
                "bad-output", f"the prediction returned no file: {output!r}", hint_s=None
            )
        data = _data_url(url) if url.startswith("data:") else self._get_bytes(url)
        try:
            audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=False)
        except Exception as exc:
            raise CallFailed(
                "bad-output", f"the output does not decode: {exc}", hint_s=None
            ) from exc
        return RenderResult(audio=np.asarray(audio, dtype=np.float32), sample_rate=int(rate))

    # ------------------------------------------------------------------ plumbing

    def _get_bytes(self, url: str) -> bytes:
        try:
            response = self._download.get(url)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CallFailed("transient", f"download failed: {exc}", hint_s=None) from exc
        return response.content

    def _raw(self, method: str, path: str) -> dict[str, Any]:
        try:
            response = self.client._request(method, path)
        except Exception as exc:
            raise self._classify(exc, posting=method == "POST") from exc
        body: dict[str, Any] = response.json()
        return body

    def _classify(self, exc: Exception, *, posting: bool) -> CallFailed | RemoteRefused:
        from replicate.exceptions import ReplicateError

        if isinstance(exc, (CallFailed, RemoteRefused)):
            return exc
        if isinstance(exc, ReplicateError):
            return self._classify_status(exc, posting=posting)
        if isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)):
            # Nothing was sent (DNS, refused connection, no free connection): safe to retry.
            return CallFailed("transient", f"could not connect: {exc}", hint_s=None)
        if isinstance(exc, httpx.TransportError):
            # Sent, reply lost (read timeout, dropped connection): a POST may have happened.
            kind: ErrorClass = "unknown-outcome" if posting else "transient"
            return CallFailed(kind, f"{type(exc).__name__}: {exc}", hint_s=None)
        raise exc

    def _classify_status(self, exc: Any, *, posting: bool) -> CallFailed | RemoteRefused:
        from songbatch.ratelimit import retry_hint_s

        status = exc.status or 0
        detail = exc.detail or exc.title or "no detail"
        message = f"HTTP {status}: {detail}"
        if status in (401, 403):
            return refused(status, detail)
        if status == 429:
            hint = retry_hint_s(getattr(self._local, "retry_after", None), exc.detail)
            return CallFailed("rate-limited", message, status=status, hint_s=hint)
        if status in (502, 504) and posting:
            # A gateway gave up waiting: the create may have gone through.
            return CallFailed("unknown-outcome", message, status=status, hint_s=None)
        if status in (408, 409) or status >= 500:
            return CallFailed("transient", message, status=status, hint_s=None)
        return CallFailed("fatal", message, status=status, hint_s=None)


PAGE = 100  # predictions per page of GET /v1/predictions


def listed(api: Api, ids: Collection[str], *, since: float) -> dict[str, PredictionState]:
    """Those of `ids` found among the newest predictions: many polls in one call per page
    (newest first). Pages are read until every id is found, a page reaches predictions created
    before `since`, or one page more than the ids could fill. An id not found (the account made
    newer predictions elsewhere) is the caller's to GET by itself."""
    wanted = set(ids)
    found: dict[str, PredictionState] = {}
    for state in api.recent(max_pages=len(wanted) // PAGE + 2):
        if state.id in wanted:
            found[state.id] = state
            if len(found) == len(wanted):
                break
        elif state.created_at is not None and state.created_at < since:
            break
    return found


def refused(status: int, detail: str) -> RemoteRefused:
    """The one line a person reads when the API refuses the credentials."""
    what = "the API token" if status == 401 else "the request"
    return RemoteRefused(
        f"Replicate refused {what} (HTTP {status}: {redact(detail)}): check"
        " REPLICATE_API_TOKEN and its access to the models; no job was charged and the rest"
        " stays pending"
    )


def _state(data: dict[str, Any]) -> PredictionState:
    metrics = data.get("metrics") or {}
    predict = metrics.get("predict_time")
    return PredictionState(
        id=str(data["id"]),
        status=str(data.get("status")),
        model=data.get("model"),
        version=data.get("version"),
        input=dict(data.get("input") or {}),
        output=data.get("output"),
        error=None if data.get("error") is None else redact(str(data["error"])),
        predict_s=None if predict is None else float(predict),
        created_at=_epoch(data.get("created_at")),
    )


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _first_url(output: Any) -> str | None:
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return next((item for item in output if isinstance(item, str)), None)
    if isinstance(output, dict):
        return next((item for item in output.values() if isinstance(item, str)), None)
    return None


def _data_url(url: str) -> bytes:
    header, _, payload = url.partition(",")
    try:
        if header.endswith(";base64"):
            return base64.b64decode(payload, validate=True)
        return urllib.parse.unquote_to_bytes(payload)
    except binascii.Error as exc:
        raise CallFailed("bad-output", f"bad data: URL in the output: {exc}", hint_s=None) from exc
