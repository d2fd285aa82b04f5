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


def cuda_device_count() -> int:
    """Counted without importing torch: the coordinator must never create a CUDA context."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [part for part in visible.split(",") if part.strip()]
        return 0 if not ids or ids[0].strip().startswith("-") else len(ids)
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


def _cuda_slots(indices: list[str]) -> list[DeviceSlot]:
    return [
        DeviceSlot(name=f"cuda{index}", device="cuda", env={"CUDA_VISIBLE_DEVICES": index})
        for index in indices
    ]


def _cpu_slots(count: int) -> list[DeviceSlot]:
    # One thread each, so N CPU workers share the machine instead of oversubscribing it.
    env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return [DeviceSlot(name=f"cpu{i}", device="cpu", env=dict(env)) for i in range(count)]


def parse_devices(text: str) -> tuple[list[DeviceSlot], str | None]:
    """Returns the slots and a warning to show, if any."""
    value = text.strip().lower()
    if value == "auto":
        count = cuda_device_count()
        if count == 0:
            return _cpu_slots(1), "no CUDA device found: rendering on the CPU (slow)"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        ids = [p.strip() for p in visible.split(",")] if visible else [str(i) for i in range(count)]
        return _cuda_slots(ids), None
    if value == "cpu":
        return _cpu_slots(1), None
    if value.startswith("cpu:"):
        count_text = value.removeprefix("cpu:")
        if not count_text.isdigit() or not 1 <= int(count_text) <= 256:
            raise InputError(f"--devices {text!r}: cpu:N needs N from 1 to 256")
        return _cpu_slots(int(count_text)), None
    parts = [part.strip() for part in value.split(",")]
    if not parts or not all(part.isdigit() for part in parts):
        raise InputError(
            f"--devices {text!r}: expected auto, cpu, cpu:N or CUDA indices such as 0,1"
        )
    if len(set(parts)) != len(parts):
        raise InputError(f"--devices {text!r}: a device is named twice")
    return _cuda_slots(parts), None
