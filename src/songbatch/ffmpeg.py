"""Locating and running ffmpeg: the binary bundled in the imageio-ffmpeg wheel by default.

`IMAGEIO_FFMPEG_EXE` (the variable imageio-ffmpeg itself reads) points at another binary.

Every ffmpeg songbatch runs goes through `ffmpeg_lines` (an encode through `run_ffmpeg`, a
measuring pass that reads its stderr through it directly) or, for a question about the binary,
`ffmpeg_query`: one way to build the command, to keep ffmpeg from outliving its caller, and to
say a failure.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

from songbatch.errors import EngineError, Interrupted

# Never interactive: ffmpeg reading stdin would steal a terminal or hang under cron. No
# progress lines: a caller reading stderr wants the log. -y: an encode writes over the temp
# file mkstemp made for it.
_BASE_ARGS = ("-nostdin", "-hide_banner", "-nostats", "-y")
_ERROR_LINES = 8
_QUERY_TIMEOUT_S = 20


class FfmpegFailed(EngineError):
    """ffmpeg ran and exited non-zero; `tail`: its last lines of stderr, joined by ` | `."""

    def __init__(self, returncode: int, tail: str) -> None:
        super().__init__(f"ffmpeg exited {returncode}: {tail}", retryable=False)
        self.returncode = returncode
        self.tail = tail


@functools.lru_cache(maxsize=1)
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary: `IMAGEIO_FFMPEG_EXE` if set, else imageio-ffmpeg's, else one
    on PATH; EngineError(retryable=False) when there is none."""
    explicit = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if explicit:
        return explicit
    try:
        import imageio_ffmpeg
    except ImportError:  # a declared dependency, but an environment may carry its own ffmpeg
        on_path = shutil.which("ffmpeg")
        if on_path:
            return on_path
        raise EngineError(
            "no ffmpeg: install imageio-ffmpeg or put an ffmpeg on PATH", retryable=False
        ) from None
    try:
        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except RuntimeError as exc:
        raise EngineError(f"no ffmpeg binary: {exc}", retryable=False) from exc


@functools.lru_cache(maxsize=1)
def encoders() -> frozenset[str]:
    """Names of the audio encoders this ffmpeg was built with (`ffmpeg -encoders`)."""
    try:
        listing = ffmpeg_query("-encoders")
    except EngineError:  # said as the encoder that is missing, by require_encoder
        return frozenset()
    names = set()
    for line in listing.splitlines():
        fields = line.split()
        # Rows look like " A....D aac   AAC (Advanced Audio Coding)"; the header rows do not.
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0].startswith("A"):
            names.add(fields[1])
    return frozenset(names)


def require_encoder(name: str) -> None:
    if name not in encoders():
        raise EngineError(f"this ffmpeg ({ffmpeg_exe()}) has no {name} encoder", retryable=False)


def ffmpeg_query(*args: str) -> str:
    """What ffmpeg prints on stdout for a question about itself (`-version`, `-encoders`);
    EngineError(retryable=False) when it cannot run, hangs or fails."""
    try:
        result = subprocess.run(
            [ffmpeg_exe(), "-nostdin", "-hide_banner", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_QUERY_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineError(f"cannot run ffmpeg: {exc}", retryable=False) from exc
    if result.returncode != 0:
        raise FfmpegFailed(result.returncode, _tail(result.stderr.splitlines()[-_ERROR_LINES:]))
    return result.stdout


def run_ffmpeg(
    args: Sequence[str],
    *,
    cancel: threading.Event | None = None,
    feed: Iterable[bytes | memoryview] | None = None,
) -> None:
    """Run ffmpeg with `args` (an encode: only errors are logged); raise FfmpegFailed with its
    last stderr lines. `feed`: what ffmpeg reads on its standard input (`-i pipe:0`).

    ffmpeg never outlives the call: an exception here (Ctrl-C, SIGTERM) or `cancel` being set
    kills it, and `cancel` raises Interrupted.
    """
    for _line in ffmpeg_lines(args, level="error", cancel=cancel, feed=feed):
        pass


def ffmpeg_lines(
    args: Sequence[str],
    *,
    level: Literal["error", "info"] = "info",
    cancel: threading.Event | None = None,
    doing: str = "encoding",
    feed: Iterable[bytes | memoryview] | None = None,
) -> Iterator[str]:
    """ffmpeg run with `args`, its stderr (logged at `level`) a line at a time; FfmpegFailed
    with its last lines when it exits non-zero. ffmpeg never outlives the generator (closed,
    or an exception in it), and `cancel` being set kills it (Interrupted, "while `doing`"):
    a measuring filter prints nothing until the end to wake on, so a thread watches.
    `feed` is written to ffmpeg's stdin by a thread of its own (stderr is read here, so
    neither pipe can fill while the other waits); an error in it kills ffmpeg and is raised."""
    command = [ffmpeg_exe(), *_BASE_ARGS, "-loglevel", level, *args]
    stdin = subprocess.DEVNULL if feed is None else subprocess.PIPE
    try:
        process = subprocess.Popen(
            command, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        raise EngineError(f"cannot run ffmpeg: {exc}", retryable=False) from exc
    done = threading.Event()
    if cancel is not None:
        threading.Thread(target=_kill_on, args=(cancel, done, process), daemon=True).start()
    feeding = None if feed is None else _Feeder(process, feed)
    last: collections.deque[str] = collections.deque(maxlen=_ERROR_LINES)
    try:
        assert process.stderr is not None
        for raw in process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            last.append(line)
            yield line
        returncode = process.wait()
    finally:
        done.set()
        if process.poll() is None:
            process.kill()
            process.wait()
        if feeding is not None:
            feeding.join()
        if process.stderr is not None:
            process.stderr.close()
    if cancel is not None and cancel.is_set():
        raise Interrupted(f"interrupted while {doing}")
    if feeding is not None and feeding.error is not None:
        raise feeding.error
    if returncode != 0:
        raise FfmpegFailed(returncode, _tail(last))


class _Feeder:
    """Writes `feed` to the process's stdin, then closes it (ffmpeg's end of input). If `feed`
    raises, the process is killed first: closing its stdin would tell ffmpeg the input ended
    there, and it would finish a file cut short."""

    def __init__(
        self, process: subprocess.Popen[bytes], feed: Iterable[bytes | memoryview]
    ) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(process, feed), daemon=True)
        self._thread.start()

    def _run(self, process: subprocess.Popen[bytes], feed: Iterable[bytes | memoryview]) -> None:
        assert process.stdin is not None
        try:
            for data in feed:
                process.stdin.write(data)
        except BrokenPipeError:
            pass  # ffmpeg exited early: its exit code and log say why
        except BaseException as exc:  # raised again in the caller's thread
            self.error = exc
            process.kill()
        finally:
            with contextlib.suppress(BrokenPipeError, OSError):
                process.stdin.close()

    def join(self) -> None:
        self._thread.join()


def _tail(lines: Iterable[str]) -> str:
    return " | ".join(line.strip() for line in lines if line.strip()) or "no message"


def _kill_on(
    cancel: threading.Event, done: threading.Event, process: subprocess.Popen[bytes]
) -> None:
    while not done.wait(0.1):
        if cancel.is_set():
            process.kill()
            return
