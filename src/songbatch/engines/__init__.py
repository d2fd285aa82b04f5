"""Engines: loaded once per worker, then render many requests.

Which engines exist is engines/registry.py's: the built-ins and third parties' plugins, found
through the `songbatch.engines` entry points without importing any engine. `load_engine` is the
only way executors get one; each engine module is imported lazily so that a worker for the
offline engine never imports torch, and a missing optional extra is a clear error.
`check_engine` says the same before a run starts, without importing anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.util

from songbatch.engines import params as p
from songbatch.engines.base import Engine, EngineSpec, Kind, RenderRequest, RenderResult
from songbatch.engines.registry import (
    EngineEntry,
    EngineRegistry,
    clear_engine_cache,
    engine_registry,
)
from songbatch.errors import EngineUnavailable, install_hint


def known_engines() -> list[str]:
    """Every engine that can be named: built-in, and plugins that load."""
    return sorted(engine_registry().entries)


def engine_kinds(engine: str) -> tuple[Kind, ...]:
    """The kinds a local engine renders; () for a name that is not registered (or a plugin
    that does not load)."""
    entry = engine_registry().entries.get(engine)
    return tuple(entry.params) if entry is not None else ()


def params_model(engine: str, kind: Kind) -> type[p.EngineParams] | None:
    """What `engine` reads from params for `kind`; None if it is unknown or renders no such kind."""
    entry = engine_registry().entries.get(engine)
    return None if entry is None else entry.params.get(kind)


def params_models(kind: Kind) -> dict[str, type[p.EngineParams]]:
    """Every registered engine's params model for `kind`, by engine name."""
    entries = engine_registry().entries
    return {name: entry.params[kind] for name, entry in entries.items() if kind in entry.params}


def phoneme_notation(engine: str) -> str | None:
    """The phonemes `engine` reads inline ("espeak"), or None: it gets respellings."""
    entry = engine_registry().entries.get(engine)
    return None if entry is None else entry.phonemes


def _entry(spec: EngineSpec) -> EngineEntry:
    registry = engine_registry()
    entry = registry.entries.get(spec.engine)
    if entry is not None:
        return entry
    problem = registry.broken.get(spec.engine)
    if problem is not None:
        raise EngineUnavailable(
            f"{spec.kind} engine {spec.engine!r} is unavailable: {problem.reason}:"
            f" {problem.fix}, or choose another profile (--profile offline)"
        )
    raise EngineUnavailable(
        f"{spec.kind} engine {spec.engine!r} is unknown; known: {', '.join(known_engines())}"
    )


def _missing(entry: EngineEntry, spec: EngineSpec, module: str) -> EngineUnavailable:
    origin = engine_registry().origins[spec.engine]
    if origin.distribution is not None:
        hint = f"install it, or reinstall {origin.distribution} (which provides this engine)"
    else:
        hint = install_hint(entry.extra) if entry.extra else "reinstall songbatch"
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
    "EngineEntry",
    "EngineRegistry",
    "EngineSpec",
    "RenderRequest",
    "RenderResult",
    "check_engine",
    "clear_engine_cache",
    "engine_kinds",
    "engine_registry",
    "known_engines",
    "load_engine",
    "params_model",
    "params_models",
    "phoneme_notation",
]
