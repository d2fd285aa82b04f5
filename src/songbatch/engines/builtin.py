"""The built-in engines' declarations, as pyproject.toml's `songbatch.engines` entry points name
them (engines/registry.py). Light: params models and names only; each engine module is imported
by `load_engine`, in a worker."""

from __future__ import annotations

from songbatch.engines import params as p
from songbatch.engines.registry import EngineEntry

OFFLINE = EngineEntry(
    "songbatch.engines.offline",
    params={"speech": p.OfflineSpeechParams, "music": p.OfflineMusicParams},
    phonemes="espeak",  # espeak-ng's [[...]] mnemonics (engines/espeak.py)
)
MUSICGEN = EngineEntry(
    "songbatch.engines.musicgen",
    extra="local",
    requires=("torch", "transformers"),
    params={"music": p.MusicgenParams},
)
CHATTERBOX = EngineEntry(
    "songbatch.engines.chatterbox",
    extra="chatterbox",
    requires=("torch", "chatterbox"),
    params={"speech": p.ChatterboxParams},
)
