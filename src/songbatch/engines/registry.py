"""Which engines exist: the built-ins and third parties' plugins, found through entry points.

An engine is declared by an `EngineEntry` (what to import in a worker, which kinds it renders
with which params model, which phonemes it reads), published in the entry-point group
`songbatch.engines`: the entry point's name is the engine's name (what a profile's `engine:`
says) and its value (`module:attribute`) names an `EngineEntry`, or a callable taking no
arguments that returns one, in a *light* module: the planner, `check_engine` and `doctor` load
every declaration in the coordinator, which must never import torch (engines/params.py). The
engine itself (`EngineEntry.module`) is imported only by `load_engine`, in a worker.

The built-ins register the same way (pyproject.toml's `[project.entry-points."songbatch.engines"]`,
values in engines/builtin.py), and are also loaded from `BUILTIN_ENGINES` here whatever the
installed metadata says: a checkout run with PYTHONPATH=src, or an editable install older than
its pyproject, may not list them.

Rules, each reported and never silent:
- a plugin that fails to load (an ImportError or any other exception, a value that is not an
  `EngineEntry`, a declaration that does not hold) makes that one engine unavailable, with a
  one-line reason naming its distribution and entry point; every other engine still works;
- a plugin with a built-in's name (or `replicate`, the remote engine) is ignored, unloaded: the
  built-in stays, and `doctor` says which package claimed the name;
- a name two distributions declare is unavailable until one of them is removed.

Discovery runs once per process (the coordinator, each worker) and is cached; `clear_engine_cache`
forgets it (tests that put a plugin on sys.path).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from songbatch.engines import params as p
from songbatch.engines.base import Kind

GROUP = "songbatch.engines"
KINDS: tuple[Kind, ...] = ("speech", "music")
# The built-ins, as pyproject.toml registers them (tests/test_engine_plugins.py holds the two
# equal).
BUILTIN_ENGINES = {
    "offline": "songbatch.engines.builtin:OFFLINE",
    "musicgen": "songbatch.engines.builtin:MUSICGEN",
    "chatterbox": "songbatch.engines.builtin:CHATTERBOX",
}
# Names a plugin may not take besides the built-ins': `replicate` is the remote engine, which
# profiles name but no registry entry renders.
RESERVED = frozenset({*BUILTIN_ENGINES, "replicate"})


@dataclass(frozen=True)
class EngineEntry:
    """An engine's declaration, read without importing it."""

    module: str  # imported by `load_engine` in a worker; may import torch
    factory: str = "load"  # module.factory(spec, device) -> Engine
    # The songbatch pip extra that provides its dependencies (built-ins only: a plugin's own
    # dependencies are its distribution's).
    extra: str | None = None
    requires: tuple[str, ...] = ()  # top-level modules it imports, checked before a run
    # The kinds it renders, each with the params it reads (engines/params.py: light, so the
    # planner checks params without importing the engine). A speech model subclasses
    # `SpeechParams`: the planner gives every speech job the manifest's `language`.
    params: Mapping[Kind, type[p.EngineParams]] = field(default_factory=dict)
    # The phoneme notation its speech reads inline, if any: a lexicon entry's phonemes in it
    # replace the respelling (normalise/lexicon.py). Declared here, not on the engine class,
    # because the planner must know before any engine (and torch) is imported.
    phonemes: str | None = None


@dataclass(frozen=True)
class Origin:
    """Where an engine's declaration came from: an entry point of a distribution."""

    entry_point: str  # "name = module:attribute"
    distribution: str | None = None  # "name version"; None: songbatch's own declaration

    @property
    def builtin(self) -> bool:
        return self.distribution is None

    def describe(self) -> str:
        if self.distribution is None:
            return f"built-in ({self.entry_point})"
        return f"entry point {self.entry_point!r} of {self.distribution}"


@dataclass(frozen=True)
class Problem:
    """A plugin engine that is not used, and why (one line)."""

    name: str
    origins: tuple[Origin, ...]
    reason: str
    fix: str  # what to do, a clause: "reinstall or uninstall NAME VERSION"


@dataclass(frozen=True)
class EngineRegistry:
    entries: dict[str, EngineEntry]
    origins: dict[str, Origin]
    # Engines a plugin declares that cannot be used (fails to load, two distributions): a
    # profile naming one gets `reason`.
    broken: dict[str, Problem]
    # Plugins ignored because a built-in has their name: the built-in is used.
    ignored: tuple[Problem, ...]
    # Whether songbatch's own entry points are in its installed metadata (False: a stale
    # editable install or a bare checkout; the built-ins are used all the same).
    builtins_registered: bool

    def plugins(self) -> list[str]:
        return sorted(name for name, origin in self.origins.items() if not origin.builtin)


# Re-entrant: a plugin's declaration that asks for the engines while it is imported must not hang.
_lock = threading.RLock()
_cached: EngineRegistry | None = None


def engine_registry() -> EngineRegistry:
    """The engines of this process, discovered on first use."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = discover()
        return _cached


def clear_engine_cache() -> None:
    """Forget the discovered engines; the next lookup reads the entry points again. Call it
    after changing sys.path (a test adding a plugin's folder, and again after removing it)."""
    global _cached
    with _lock:
        _cached = None
    importlib.invalidate_caches()  # importlib.metadata's path cache too


def discover(found: Iterable[importlib.metadata.EntryPoint] | None = None) -> EngineRegistry:
    """Every declaration: the built-ins, then `found` (default: the installed entry points of
    the group)."""
    if found is None:
        found = importlib.metadata.entry_points(group=GROUP)
    entries: dict[str, EngineEntry] = {}
    origins: dict[str, Origin] = {}
    for name, value in BUILTIN_ENGINES.items():
        builtin = importlib.metadata.EntryPoint(name, value, GROUP)
        origin = Origin(_spelled(builtin))
        # Songbatch's own declarations: one that does not load is a bug, not a plugin's fault.
        entries[name] = _declared(builtin.load(), origin)
        origins[name] = origin
    registered = False
    claims: dict[str, list[tuple[importlib.metadata.EntryPoint, Origin]]] = {}
    ignored: list[Problem] = []
    for point in found:
        origin = Origin(_spelled(point), _distribution(point))
        if point.name in BUILTIN_ENGINES and point.value == BUILTIN_ENGINES[point.name]:
            registered = True  # the built-in's own registration (whoever's metadata lists it)
        elif point.name in RESERVED:
            what = "the remote engine's" if point.name == "replicate" else "a built-in engine's"
            reason = f"{origin.describe()} is ignored: {point.name!r} is {what} name"
            fix = f"rename the entry point in {origin.distribution}, or uninstall it"
            ignored.append(Problem(point.name, (origin,), reason, fix))
        else:
            claims.setdefault(point.name, []).append((point, origin))
    broken: dict[str, Problem] = {}
    for name, points in sorted(claims.items()):
        if len(points) > 1:
            points.sort(key=lambda claim: str(claim[1].distribution))
            named = " and ".join(o.describe() for _, o in points)
            reason = f"{name!r} is declared {len(points)} times, by {named}"
            fix = f"uninstall all but one of {', '.join(str(o.distribution) for _, o in points)}"
            broken[name] = Problem(name, tuple(o for _, o in points), reason, fix)
            continue
        [(point, origin)] = points
        try:
            entries[name] = _declared(_load(point), origin)
            origins[name] = origin
        except Exception as exc:  # a plugin's import may raise anything: reported, not raised
            reason = f"{origin.describe()} does not load: {_one_line(exc)}"
            fix = f"reinstall or uninstall {origin.distribution}"
            broken[name] = Problem(name, (origin,), reason, fix)
    return EngineRegistry(entries, origins, broken, tuple(ignored), registered)


class DeclarationError(Exception):
    """A plugin's declaration is not an `EngineEntry` that holds."""


def _load(point: importlib.metadata.EntryPoint) -> Any:
    value = point.load()
    if not isinstance(value, EngineEntry) and callable(value):
        value = value()
    return value


def _declared(value: Any, origin: Origin) -> EngineEntry:
    """`value` if it is an `EngineEntry` songbatch can use; else DeclarationError."""
    if not isinstance(value, EngineEntry):
        raise DeclarationError(
            f"{origin.entry_point.split(' = ')[-1]} is a {type(value).__name__}, not a"
            " songbatch.engines.EngineEntry (or a function returning one)"
        )
    if not isinstance(value.module, str) or not value.module:
        raise DeclarationError("its EngineEntry names no module")
    if not value.params:
        raise DeclarationError("its EngineEntry renders no kind: `params` is empty")
    for kind, model in value.params.items():
        if kind not in KINDS:
            raise DeclarationError(f"unknown kind {kind!r} in its params (speech, music)")
        base = p.SpeechParams if kind == "speech" else p.EngineParams
        if not (isinstance(model, type) and issubclass(model, base)):
            raise DeclarationError(
                f"its {kind} params model must subclass songbatch.engines.params.{base.__name__}"
            )
    from songbatch.normalise.lexicon import NOTATIONS

    if value.phonemes is not None and value.phonemes not in NOTATIONS:
        raise DeclarationError(
            f"unknown phoneme notation {value.phonemes!r} (known: {', '.join(NOTATIONS)})"
        )
    return value


def _spelled(point: importlib.metadata.EntryPoint) -> str:
    return f"{point.name} = {point.value}"


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    name = getattr(dist, "name", None)
    if dist is None or not name:
        return "an unnamed distribution"
    return f"{name} {dist.version}" if dist.version else str(name)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if isinstance(exc, DeclarationError):
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "BUILTIN_ENGINES",
    "GROUP",
    "EngineEntry",
    "EngineRegistry",
    "Origin",
    "Problem",
    "clear_engine_cache",
    "discover",
    "engine_registry",
]
