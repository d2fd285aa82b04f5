"""Engines: loaded once per worker, then render many requests.

`load_engine` is the only way executors get one; each engine module is imported lazily so that a
worker for the offline engine never imports torch, and a missing optional extra is a clear error.
"""

from __future__ import annotations

import importlib

from songbatch.engines.base import Engine, EngineSpec, RenderRequest, RenderResult
from songbatch.errors import EngineUnavailable

# engine name -> (module, factory function, pip extra that provides it)
_REGISTRY: dict[str, tuple[str, str, str | None]] = {
    "offline": ("songbatch.engines.offline", "load", None),
    "synthetic": ("songbatch.engines.synthetic", "load", None),
}


def register(name: str, module: str, factory: str, extra: str | None = None) -> None:
    """Make an engine loadable by name (tests register fakes this way)."""
    _REGISTRY[name] = (module, factory, extra)


def known_engines() -> list[str]:
    return sorted(_REGISTRY)


def load_engine(spec: EngineSpec, device: str) -> Engine:
    try:
        module_name, factory_name, extra = _REGISTRY[spec.engine]
    except KeyError:
        raise EngineUnavailable(
            f"unknown engine {spec.engine!r}; known: {', '.join(known_engines())}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"pip install 'songbatch[{extra}]'" if extra else "reinstall songbatch"
        raise EngineUnavailable(
            f"engine {spec.engine!r} needs {exc.name or 'a missing package'}: {hint}"
        ) from exc
    factory = getattr(module, factory_name)
    engine: Engine = factory(spec, device)
    return engine


__all__ = [
    "Engine",
    "EngineSpec",
    "RenderRequest",
    "RenderResult",
    "known_engines",
    "load_engine",
    "register",
]
