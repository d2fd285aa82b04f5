"""Engines: loaded once per worker, then render many requests.

`load_engine` is the only way executors get one; each engine module is imported lazily so that a
worker for the offline engine never imports torch, and a missing optional extra is a clear error.
`check_engine` says the same before a run starts, without importing anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass

from songbatch.engines.base import Engine, EngineSpec, RenderRequest, RenderResult
from songbatch.errors import EngineUnavailable


@dataclass(frozen=True)
class EngineEntry:
    module: str
    factory: str = "load"
    extra: str | None = None  # the pip extra that provides its dependencies
    requires: tuple[str, ...] = ()  # top-level modules it imports that the extra installs


_REGISTRY: dict[str, EngineEntry] = {
    "offline": EngineEntry("songbatch.engines.offline"),
    "synthetic": EngineEntry("songbatch.engines.synthetic"),
    "musicgen": EngineEntry(
        "songbatch.engines.musicgen", extra="local", requires=("torch", "transformers")
    ),
    "chatterbox": EngineEntry(
        "songbatch.engines.chatterbox", extra="chatterbox", requires=("torch", "chatterbox")
    ),
}


def known_engines() -> list[str]:
    return sorted(_REGISTRY)


def _entry(spec: EngineSpec) -> EngineEntry:
    try:
        return _REGISTRY[spec.engine]
    except KeyError:
        raise EngineUnavailable(
            f"{spec.kind} engine {spec.engine!r} is unknown; known: {', '.join(known_engines())}"
        ) from None


def _missing(entry: EngineEntry, spec: EngineSpec, module: str) -> EngineUnavailable:
    hint = f"pip install 'songbatch[{entry.extra}]'" if entry.extra else "reinstall songbatch"
    return EngineUnavailable(
        f"{spec.kind} engine {spec.engine!r} needs the {module!r} package: {hint},"
        " or choose another profile (--profile offline)"
    )


def check_engine(spec: EngineSpec) -> None:
    """Raise EngineUnavailable now, before a run starts, if `load_engine` would fail to import."""
    entry = _entry(spec)
    for module in entry.requires:
        if importlib.util.find_spec(module) is None:
            raise _missing(entry, spec, module)


def load_engine(spec: EngineSpec, device: str) -> Engine:
    entry = _entry(spec)
    try:
        module = importlib.import_module(entry.module)
    except ImportError as exc:
        raise _missing(entry, spec, exc.name or entry.module) from exc
    engine: Engine = getattr(module, entry.factory)(spec, device)
    return engine


__all__ = [
    "Engine",
    "EngineSpec",
    "RenderRequest",
    "RenderResult",
    "check_engine",
    "known_engines",
    "load_engine",
]
