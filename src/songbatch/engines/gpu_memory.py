"""Out-of-memory handling shared by the torch engines (imported only where torch is)."""

from __future__ import annotations

import gc

import torch


def is_out_of_memory(exc: BaseException) -> bool:
    """CUDA's own error, or the RuntimeError other backends (and older torch) raise."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def free_memory(device: torch.device | str) -> None:
    """Drop what the failed attempt left cached, before a smaller one tries."""
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
