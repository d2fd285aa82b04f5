"""`--devices` parsing: auto, cpu, cpu:N, or CUDA indices such as 0,1."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field

from songbatch.errors import InputError


@dataclass(frozen=True)
class DeviceSlot:
    """One worker process: its name, the device string engines get, and its environment."""

    name: str
    device: str
    env: dict[str, str] = field(default_factory=dict)


def visible_cuda_ids() -> list[str] | None:
    """The scheduler's CUDA_VISIBLE_DEVICES as a list (indices, UUIDs or MIG ids), or None when
    it is not set. An empty or negative first entry hides every device."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return None
    ids = [part.strip() for part in visible.split(",") if part.strip()]
    return [] if not ids or ids[0].startswith("-") else ids


def cuda_device_count() -> int:
    """Counted without importing torch: the coordinator must never create a CUDA context."""
    visible = visible_cuda_ids()
    if visible is not None:
        return len(visible)
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        listing = subprocess.run(
            [smi, "-L"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in listing.splitlines() if line.startswith("GPU "))


def _physical_ids(text: str, indices: list[str]) -> list[str]:
    """`--devices 0,1` counts among the devices this process may use: under a scheduler's
    CUDA_VISIBLE_DEVICES=2,3 that is physical 2 and 3, never someone else's 0 and 1."""
    visible = visible_cuda_ids()
    count = len(visible) if visible is not None else cuda_device_count()
    wanted = [int(index) for index in indices]
    if count == 0:
        raise InputError(
            f"--devices {text!r}: no CUDA device is visible here; use --devices cpu or cpu:N"
        )
    beyond = [index for index in wanted if index >= count]
    if beyond:
        raise InputError(
            f"--devices {text!r}: there is no CUDA device {beyond[0]}: {count} visible"
            f" (0 to {count - 1})"
        )
    return [visible[index] for index in wanted] if visible is not None else indices


def _cuda_slots(indices: list[str], physical: list[str]) -> list[DeviceSlot]:
    """Named by the index the person gave, pinned to the physical device it maps to."""
    return [
        DeviceSlot(name=f"cuda{index}", device="cuda", env={"CUDA_VISIBLE_DEVICES": device})
        for index, device in zip(indices, physical, strict=True)
    ]


def _cpu_slots(count: int) -> list[DeviceSlot]:
    # One thread each, so N CPU workers share the machine instead of oversubscribing it.
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return [DeviceSlot(name=f"cpu{i}", device="cpu", env=dict(env)) for i in range(count)]


def check_device_syntax(text: str) -> str:
    """The form of a devices value, checkable anywhere (a profile as it loads): whether those
    devices exist is checked when a run starts, on the machine that runs it."""
    value = text.strip().lower()
    if value in ("auto", "cpu"):
        return text
    if value.startswith("cpu:"):
        count = value.removeprefix("cpu:")
        if not count.isdigit() or not 1 <= int(count) <= 256:
            raise ValueError(f"{text!r}: cpu:N needs N from 1 to 256")
        return text
    parts = [part.strip() for part in value.split(",")]
    if not all(part.isdigit() for part in parts):
        raise ValueError(f"{text!r}: expected auto, cpu, cpu:N or CUDA indices such as 0,1")
    if len(set(parts)) != len(parts):
        raise ValueError(f"{text!r}: a device is named twice")
    return text


def parse_devices(text: str) -> tuple[list[DeviceSlot], str | None]:
    """Returns the slots and a warning to show, if any."""
    try:
        check_device_syntax(text)
    except ValueError as exc:
        raise InputError(f"--devices {exc}") from None
    value = text.strip().lower()
    if value == "auto":
        count = cuda_device_count()
        if count == 0:
            return _cpu_slots(1), "no CUDA device found: rendering on the CPU (slow)"
        indices = [str(i) for i in range(count)]
        return _cuda_slots(indices, visible_cuda_ids() or indices), None
    if value == "cpu":
        return _cpu_slots(1), None
    if value.startswith("cpu:"):
        count = int(value.removeprefix("cpu:"))
        return _cpu_slots(count), _oversubscribed(count)
    parts = [part.strip() for part in value.split(",")]
    return _cuda_slots(parts, _physical_ids(text, parts)), None


def _oversubscribed(workers: int) -> str | None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if cores is None or workers <= cores:
        return None
    return (
        f"--devices cpu:{workers}: more workers than the {cores} CPU core(s) this process may"
        " use; they share them, so each job renders slower"
    )
