"""Engines: loaded once per worker, then render many requests.

`load_engine` is the only way executors get one; each engine module is imported lazily so that a
worker for the offline engine never imports torch, and a missing optional extra is a clear error.
`check_engine` says the same before a run starts, without importing anything heavy.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field

from songbatch.engines import params as p
from songbatch.engines.base import Engine, EngineSpec, Kind, RenderRequest, RenderResult
from songbatch.errors import EngineUnavailable, install_hint


@dataclass(frozen=True)
class EngineEntry:
    module: str
    factory: str = "load"
    extra: str | None = None  # the pip extra that provides its dependencies
    requires: tuple[str, ...] = ()  # top-level modules it imports that the extra installs
    # The kinds it renders, each with the params it reads (engines/params.py: light, so the
    # planner checks params without importing the engine).
    params: dict[Kind, type[p.EngineParams]] = field(default_factory=dict)
    # The phoneme notation its speech reads inline, if any: a lexicon entry's phonemes in it
    # replace the respelling (normalise/lexicon.py). Declared here, not on the engine class,
    # because the planner must know before any engine (and torch) is imported.
    phonemes: str | None = None


_REGISTRY: dict[str, EngineEntry] = {
    "offline": EngineEntry(
        "songbatch.engines.offline",
        params={"speech": p.OfflineSpeechParams, "music": p.OfflineMusicParams},
        phonemes="espeak",  # espeak-ng's [[...]] mnemonics (engines/espeak.py)
    ),
    "synthetic": EngineEntry(
        "songbatch.engines.synthetic",
        params={"speech": p.SyntheticSpeechParams, "music": p.SyntheticMusicParams},
    ),
    "musicgen": EngineEntry(
        "songbatch.engines.musicgen",
        extra="local",
        requires=("torch", "transformers"),
        params={"music": p.MusicgenParams},
    ),
    "chatterbox": EngineEntry(
        "songbatch.engines.chatterbox",
        extra="chatterbox",
        requires=("torch", "chatterbox"),
        params={"speech": p.ChatterboxParams},
    ),
}


def known_engines() -> list[str]:
    return sorted(_REGISTRY)


def engine_kinds(engine: str) -> tuple[Kind, ...]:
    """The kinds a local engine renders; () for a name that is not registered."""
    entry = _REGISTRY.get(engine)
    return tuple(entry.params) if entry is not None else ()


def params_model(engine: str, kind: Kind) -> type[p.EngineParams] | None:
    """What `engine` reads from params for `kind`; None if it is unknown or renders no such kind."""
    entry = _REGISTRY.get(engine)
    return None if entry is None else entry.params.get(kind)


def params_models(kind: Kind) -> dict[str, type[p.EngineParams]]:
    """Every registered engine's params model for `kind`, by engine name."""
    return {name: entry.params[kind] for name, entry in _REGISTRY.items() if kind in entry.params}


def phoneme_notation(engine: str) -> str | None:
    """The phonemes `engine` reads inline ("espeak"), or None: it gets respellings."""
    entry = _REGISTRY.get(engine)
    return None if entry is None else entry.phonemes


def _entry(spec: EngineSpec) -> EngineEntry:
    try:
        return _REGISTRY[spec.engine]
    except KeyError:
        raise EngineUnavailable(
            f"{spec.kind} engine {spec.engine!r} is unknown; known: {', '.join(known_engines())}"
        ) from None


def _missing(entry: EngineEntry, spec: EngineSpec, module: str) -> EngineUnavailable:
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
    "EngineSpec",
    "RenderRequest",
    "RenderResult",
    "check_engine",
    "engine_kinds",
    "known_engines",
    "load_engine",
    "params_model",
    "params_models",
    "phoneme_notation",
]
