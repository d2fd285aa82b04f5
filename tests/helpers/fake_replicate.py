"""A fake Replicate HTTP API on 127.0.0.1, for driving the real `replicate` client in tests.

Why a fake: Replicate is a paid API. This is the only fake in the remote tests: songbatch's own
code and the official client run unchanged against it (REPLICATE_BASE_URL, no /v1 suffix).

It implements what songbatch calls: model and version creates, get, cancel, list (newest first,
paginated) and file uploads. Time comes from an injected clock, so a virtual clock shared with the
executor runs hours of predictions in seconds. It injects faults on creates (429 with and without
Retry-After, 500/503, read timeouts, lost replies, model errors, 422 refusing an input, 401),
on any other call (`call_faults`: a status for a method and path, e.g. every poll answered 500),
enforces its own create limit over any sliding 60 s window, and records what happened for the
tests to assert on. With `echo_auth` every error it gives quotes the request's Authorization
header and the token, as careless servers and proxies do (the redaction tests).
Status faults end a created prediction otherwise: `aborted`, `canceled` (by someone else, at the
end of its latency) or `stuck` (processing for `stuck_s`, until cancelled). With `starting_s` a
prediction is `starting` (queued, not billed) that long before it runs.

Calls come in side by side (the executor's pool): each is served on its own thread, and the fake
counts how many are in at once (`max_in_flight`) and of what kind (`calls`). `round_trip_s` holds
every request and every reply back half that long in real time, as a real network's round trip
does; only with a real clock (the wall-clock benchmark): on a virtual one calls take no time.
"""

from __future__ import annotations

import base64
import functools
import io
import itertools
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import numpy as np
import soundfile as sf

Clock = Callable[[], float]
FaultPlan = Callable[[int, dict[str, Any]], "str | None"]
CallFaults = Callable[[str, str], "str | None"]  # (method, path) -> an HTTP status, or None
TOKEN = "r8_fake_token_for_tests"
FAULTS = ("429-header", "429-body", "500", "503", "timeout", "lost", "model-error", "422", "401")
STATUS_FAULTS = ("aborted", "canceled", "stuck")  # created, then ended (or kept) otherwise


class VirtualClock:
    """Shared by the fake and the executor: sleeping advances it at once."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)


@dataclass
class Prediction:
    id: str
    model: str
    version: str
    input: dict[str, Any]
    created: float
    latency_s: float
    fail_with: str | None = None
    canceled_at: float | None = None  # shown as canceled from then on
    aborted: bool = False
    starting_s: float = 0.0  # queued this long before it runs (and is billed)

    @property
    def started(self) -> float:
        return self.created + self.starting_s

    @property
    def done_at(self) -> float:
        return self.started + self.latency_s


@dataclass
class CreateRecord:
    at: float
    input_key: str
    outcome: str  # created | a fault name | throttled (the fake's own limit)


@dataclass
class FakeState:
    clock: Clock
    latency_s: float = 0.2
    limit_per_min: int | None = None
    faults: FaultPlan | None = None
    stall_s: float = 0.6  # real seconds a "timeout" fault holds the reply back
    round_trip_s: float = 0.0  # real seconds each call spends on the wire, there and back
    serve_files: bool = False
    output_s: float = 0.25
    starting_s: float = 0.0  # how long each new prediction shows `starting`
    stuck_s: float = 30 * 86400.0  # how long a `stuck` prediction keeps processing
    call_faults: CallFaults | None = None  # every call but creates (those have `faults`)
    echo_auth: bool = False
    token: str = TOKEN
    call_fault_count: Counter[str] = field(default_factory=Counter)
    predictions: dict[str, Prediction] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    creates: list[CreateRecord] = field(default_factory=list)
    window: deque[float] = field(default_factory=deque)
    hint_until: float = 0.0
    hint_at: float = 0.0  # when the last hint was given
    # Creates sent after a 429 (strictly later) but before its hint had passed. One at the very
    # instant of the 429 was on the wire beside it (calls take no virtual time), not after it.
    early_creates: int = 0
    throttled: int = 0  # 429s the fake's own limit gave (songbatch went too fast)
    max_in_window: int = 0
    uploads: int = 0
    cancels: int = 0
    cancelled_ids: list[str] = field(default_factory=list)  # per cancel POST
    gets: int = 0
    calls: Counter[str] = field(default_factory=Counter)  # create, get, list, cancel, file, ...
    in_flight: int = 0
    max_in_flight: int = 0  # calls being served at once
    in_flight_by: Counter[str] = field(default_factory=Counter)  # per kind of call
    max_in_flight_by: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ids: itertools.count[int] = field(default_factory=itertools.count)


class FakeReplicate:
    """`with FakeReplicate(clock) as fake:` serves on `fake.base_url` until the block ends."""

    def __init__(self, clock: Clock | None = None, **options: Any) -> None:
        self.state = FakeState(clock=clock or time.time, **options)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.state_base = self.base_url
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeReplicate:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self) -> dict[str, str]:
        return {"REPLICATE_API_TOKEN": self.state.token, "REPLICATE_BASE_URL": self.base_url}

    def creates_by_input(self) -> Counter[str]:
        """Predictions actually created (paid for), per distinct input."""
        return Counter(p_key(p.input) for p in self.state.predictions.values())


def p_key(model_input: dict[str, Any]) -> str:
    return json.dumps(model_input, sort_keys=True)


def _iso(at: float | None) -> str | None:
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@functools.lru_cache(maxsize=8)
def wav_data_url(seconds: float, rate: int = 16000) -> str:
    buffer = io.BytesIO()
    t = np.arange(int(seconds * rate)) / rate
    sf.write(buffer, 0.2 * np.sin(2 * np.pi * 440 * t), rate, format="WAV", subtype="PCM_16")
    return "data:audio/wav;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _view(state: FakeState, p: Prediction, base: str) -> dict[str, Any]:
    """A prediction as the API shows it at the fake's current time."""
    now = state.clock()
    done_at = p.done_at
    status, output, error, completed = "processing", None, None, None
    if p.canceled_at is not None and now >= p.canceled_at:
        status, completed = "canceled", p.canceled_at
    elif now < p.started:
        status = "starting"
    elif now >= done_at:
        completed = done_at
        if p.aborted:
            status = "aborted"
        elif p.fail_with:
            status, error = "failed", p.fail_with
        else:
            status = "succeeded"
            output = (
                f"{base}/files/{p.id}.wav" if state.serve_files else wav_data_url(state.output_s)
            )
    ran = None if completed is None else max(0.0, completed - p.started)
    metrics = {} if ran is None else {"predict_time": round(ran, 3)}
    return {
        "id": p.id,
        "model": p.model,
        "version": p.version,
        "status": status,
        "input": p.input,
        "output": output,
        "logs": "",
        "error": error,
        "metrics": metrics,
        "created_at": _iso(p.created),
        "started_at": _iso(p.started) if now >= p.started else None,
        "completed_at": _iso(completed),
        "urls": {
            "get": f"{base}/v1/predictions/{p.id}",
            "cancel": f"{base}/v1/predictions/{p.id}/cancel",
        },
    }


def _handler(state: FakeState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per reply: headers and body written apart meet delayed ACKs (40 ms each).
        disable_nagle_algorithm = True
        wbufsize = 1 << 16

        def log_message(self, format: str, *args: Any) -> None:
            pass

        @property
        def base(self) -> str:
            return f"http://{self.headers.get('Host')}"

        def travel(self) -> None:
            """Half a round trip: the request on its way in, or the reply on its way out."""
            if state.round_trip_s:
                time.sleep(state.round_trip_s / 2)

        def serve(self, kind: str, handle: Callable[[], None]) -> None:
            self.travel()
            with state.lock:
                state.calls[kind] += 1
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
                state.in_flight_by[kind] += 1
                state.max_in_flight_by[kind] = max(
                    state.max_in_flight_by[kind], state.in_flight_by[kind]
                )
            try:
                handle()
            finally:
                with state.lock:
                    state.in_flight -= 1
                    state.in_flight_by[kind] -= 1

        def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            self.travel()
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def body(self) -> bytes:
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def authorised(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {state.token}":
                return True
            self.reply(401, {"detail": "Invalid token"})
            return False

        def echo(self, detail: str) -> str:
            if not state.echo_auth:
                return detail
            auth = self.headers.get("Authorization")
            return f"{detail} (request had Authorization: {auth}; token={state.token})"

        def call_fault(self, method: str) -> bool:
            """A fault for this call, if the plan has one: answered, and True."""
            if state.call_faults is None:
                return False
            fault = state.call_faults(method, self.path)
            if fault is None:
                return False
            with state.lock:
                state.call_fault_count[fault] += 1
            self.reply_fault(fault)
            return True

        def do_GET(self) -> None:
            if self.path.startswith("/files/"):
                kind = "file"
            elif self.path.startswith("/v1/predictions/"):
                kind = "get"
            else:
                kind = "list" if self.path.startswith("/v1/predictions") else "other"
            self.serve(kind, self.get)

        def get(self) -> None:
            if self.path.startswith("/files/"):
                self.serve_file()
                return
            if not self.authorised() or self.call_fault("GET"):
                return
            with state.lock:
                state.gets += 1
            if self.path.startswith("/v1/predictions/"):
                p = state.predictions.get(self.path.rsplit("/", 1)[1])
                if p is None:
                    self.reply(404, {"detail": "Not found"})
                else:
                    self.reply(200, _view(state, p, self.base))
            elif self.path.startswith("/v1/predictions"):
                self.list_page()
            else:
                self.reply(404, {"detail": "Not found"})

        def list_page(self) -> None:
            start = int(self.path.partition("cursor=")[2] or 0)
            with state.lock:  # a create may be adding to the order meanwhile
                ids = list(reversed(state.order))[start : start + 100]
                more = start + 100 < len(state.order)
            results = [_view(state, state.predictions[i], self.base) for i in ids]
            nxt = f"{self.base}/v1/predictions?cursor={start + 100}" if more else None
            self.reply(200, {"previous": None, "next": nxt, "results": results})

        def serve_file(self) -> None:
            pid = self.path.removeprefix("/files/").removesuffix(".wav")
            _, _, payload = wav_data_url(state.output_s).partition(",")
            data = base64.b64decode(payload)
            if pid not in state.predictions:
                self.reply(404, {"detail": "Not found"})
                return
            self.travel()
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            if self.path.endswith("/cancel"):
                kind = "cancel"
            elif self.path == "/v1/files":
                kind = "upload"
            else:
                kind = "create" if self.path.endswith("/predictions") else "other"
            self.serve(kind, self.post)

        def post(self) -> None:
            raw = self.body()
            if not self.authorised():
                return
            creating = self.path == "/v1/predictions" or self.path.endswith("/predictions")
            if not creating and self.call_fault("POST"):
                return
            if self.path.endswith("/cancel"):
                self.cancel()
            elif self.path == "/v1/files":
                self.upload(raw)
            elif self.path == "/v1/predictions":
                body = json.loads(raw)
                self.create(f"versioned/{body['version'][:8]}", body["version"], body["input"])
            elif self.path.startswith("/v1/models/") and self.path.endswith("/predictions"):
                model = self.path.removeprefix("/v1/models/").removesuffix("/predictions")
                self.create(model, "official", json.loads(raw)["input"])
            else:
                self.reply(404, {"detail": "Not found"})

        def cancel(self) -> None:
            p = state.predictions.get(self.path.split("/")[-2])
            if p is None:
                self.reply(404, {"detail": "Not found"})
                return
            with state.lock:
                state.cancels += 1
                state.cancelled_ids.append(p.id)
                now = state.clock()
                if now < p.done_at and (p.canceled_at is None or p.canceled_at > now):
                    p.canceled_at = now
            self.reply(200, _view(state, p, self.base))

        def upload(self, raw: bytes) -> None:
            with state.lock:
                state.uploads += 1
                fid = f"file{next(state.ids)}"
            now = state.clock()
            self.reply(
                201,
                {
                    "id": fid,
                    "name": "voice.wav",
                    "content_type": "audio/wav",
                    "size": len(raw),
                    "etag": fid,
                    "checksums": {},
                    "metadata": {},
                    "created_at": _iso(now),
                    "expires_at": _iso(now + 86400),
                    "urls": {"get": f"{self.base}/v1/files/{fid}"},
                },
            )

        def create(self, model: str, version: str, model_input: dict[str, Any]) -> None:
            with state.lock:
                fault = self.admit(model_input)
            if fault in (None, "lost", "model-error", *STATUS_FAULTS):
                p = self.store(model, version, model_input, fault)
                if fault == "lost":
                    self.close_connection = True  # created, but the reply never comes
                    return
                self.reply(201, _view(state, p, self.base))
            elif fault == "timeout":
                time.sleep(state.stall_s)  # real time: longer than the client's read timeout
                self.close_connection = True
            else:
                self.reply_fault(fault)

        def admit(self, model_input: dict[str, Any]) -> str | None:
            """Under the lock: count the create, check hints and the limit, pick a fault."""
            now = state.clock()
            if state.hint_at < now < state.hint_until - 1e-9:
                state.early_creates += 1
            state.window.append(now)
            while state.window and state.window[0] <= now - 60.0:
                state.window.popleft()
            state.max_in_window = max(state.max_in_window, len(state.window))
            key = p_key(model_input)
            index = len(state.creates)
            fault = None
            if state.limit_per_min is not None and len(state.window) > state.limit_per_min:
                fault = "throttled"
                state.throttled += 1
            elif state.faults is not None:
                fault = state.faults(index, model_input)
            state.creates.append(CreateRecord(now, key, fault or "created"))
            if fault in ("429-header", "429-body", "throttled"):
                state.hint_until = max(state.hint_until, now + self.hint_s(fault))
                state.hint_at = now
            return fault

        def hint_s(self, fault: str) -> float:
            if fault == "throttled":
                return 60.0 - (state.clock() - state.window[0])
            return 3.0 if fault == "429-header" else 5.0

        def reply_fault(self, fault: str) -> None:
            if fault in ("429-header", "throttled"):
                hint = max(1, round(self.hint_s(fault) + 0.5))
                body = {"detail": "Request was throttled."}
                self.reply(429, body, {"Retry-After": str(hint)})
            elif fault == "429-body":
                resets = round(self.hint_s(fault))
                detail = f"Request was throttled. Your rate limit resets in ~{resets}s."
                self.reply(429, {"detail": detail})
            elif fault in ("401", "403"):
                detail = "You did not pass a valid authentication token"
                self.reply(int(fault), {"detail": self.echo(detail)})
            elif fault == "422":
                detail = "Prediction input failed validation: text: too long for this model"
                self.reply(422, {"title": "Input validation failed", "detail": self.echo(detail)})
            else:
                self.reply(int(fault), {"detail": self.echo(f"Internal error {fault}")})

        def store(
            self, model: str, version: str, model_input: dict[str, Any], fault: str | None
        ) -> Prediction:
            model_error = self.echo("CUDA out of memory (fake model error)")
            with state.lock:
                pid = f"p{next(state.ids):06d}"
                p = Prediction(
                    id=pid,
                    model=model,
                    version=version,
                    input=model_input,
                    created=state.clock(),
                    latency_s=state.stuck_s if fault == "stuck" else state.latency_s,
                    fail_with=model_error if fault == "model-error" else None,
                    aborted=fault == "aborted",
                    starting_s=state.starting_s,
                )
                if fault == "canceled":
                    p.canceled_at = p.done_at  # someone else cancels it as it would finish
                state.predictions[pid] = p
                state.order.append(pid)
            return p

    return Handler


class NetworkOutage(httpx.BaseTransport):
    """The network layer under the real client, failing every request inside [start, end) of
    the virtual clock the way a DNS outage does, and passing the rest to httpx's own transport.

    Why here and not in the server: a server cannot make a client's name lookup or connect fail
    (it can only drop a connection it accepted, which reads as a lost reply, not "no network").
    httpx's HTTPTransport raises exactly this ConnectError when getaddrinfo fails, so the
    replicate client's retry layer above it and songbatch see what they would see for real."""

    def __init__(self, clock: Clock, start: float, end: float) -> None:
        self.clock = clock
        self.start = start
        self.end = end
        self.failed = 0
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.start <= self.clock() < self.end:
            self.failed += 1
            raise httpx.ConnectError(
                "[Errno -3] Temporary failure in name resolution", request=request
            )
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()
