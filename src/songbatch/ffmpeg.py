"""Locating and running ffmpeg: the binary bundled in the imageio-ffmpeg wheel by default.

`IMAGEIO_FFMPEG_EXE` (the variable imageio-ffmpeg itself reads) points at another binary.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence

from songbatch.errors import EngineError, Interrupted

# Quiet, never interactive: ffmpeg reading stdin would steal a terminal or hang under cron.
_BASE_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-y")
_ERROR_LINES = 8


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
    result = subprocess.run(
        [ffmpeg_exe(), "-nostdin", "-hide_banner", "-encoders"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    names = set()
    for line in result.stdout.splitlines():
        fields = line.split()
        # Rows look like " A....D aac   AAC (Advanced Audio Coding)"; the header rows do not.
        if len(fields) >= 2 and len(fields[0]) == 6 and fields[0].startswith("A"):
            names.add(fields[1])
    return frozenset(names)


def require_encoder(name: str) -> None:
    if name not in encoders():
        raise EngineError(f"this ffmpeg ({ffmpeg_exe()}) has no {name} encoder", retryable=False)


def run_ffmpeg(args: Sequence[str], *, cancel: threading.Event | None = None) -> None:
    """Run ffmpeg with `args`; raise EngineError(retryable=False) with its last stderr lines.

    ffmpeg never outlives the call: an exception here (Ctrl-C, SIGTERM) or `cancel` being set
    kills it, and `cancel` raises Interrupted.
    """
    command = [ffmpeg_exe(), *_BASE_ARGS, *args]
    with tempfile.TemporaryFile() as errors:
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errors
            )
        except OSError as exc:
            raise EngineError(f"cannot run ffmpeg: {exc}", retryable=False) from exc
        try:
            returncode = _wait(process, cancel)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        errors.seek(0)
        stderr = errors.read()
    if returncode != 0:
        lines = stderr.decode("utf-8", "replace").strip().splitlines()
        tail = " | ".join(lines[-_ERROR_LINES:]) or "no message"
        raise EngineError(f"ffmpeg exited {returncode}: {tail}", retryable=False)


def _wait(process: subprocess.Popen[bytes], cancel: threading.Event | None) -> int:
    if cancel is None:
        return process.wait()
    while True:
        try:
            return process.wait(timeout=0.1)
        except subprocess.TimeoutExpired:
            if cancel is not None and cancel.is_set():
                raise Interrupted("interrupted while encoding") from None
