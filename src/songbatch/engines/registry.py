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
forgets it (tests that put a plugin on sys.path). The loading, the rules and the cache are
songbatch/entrypoints.py's, which the backends' registry (executors/registry.py) shares.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from songbatch.engines import params as p
from songbatch.engines.base import Kind
from songbatch.entrypoints import DeclarationError, Origin, PluginGroup, Problem, Registry

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


# The registry of engines: `entries` are `EngineEntry`s; `broken`: engines a plugin declares
# that cannot be used (a profile naming one gets its `reason`); `ignored`: plugins with a
# built-in's name (the built-in is used).
EngineRegistry = Registry[EngineEntry]


def _check(value: EngineEntry) -> None:
    """Raise DeclarationError unless `value` is an `EngineEntry` songbatch can use."""
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


ENGINES = PluginGroup(
    GROUP,
    EngineEntry,
    BUILTIN_ENGINES,
    _check,
    spelled="songbatch.engines.EngineEntry",
    reserved={"replicate": "the remote engine's"},
    what="a built-in engine's",
)


def engine_registry() -> EngineRegistry:
    """The engines of this process, discovered on first use."""
    return ENGINES.registry()


def clear_engine_cache() -> None:
    """Forget the discovered engines; the next lookup reads the entry points again. Call it
    after changing sys.path (a test adding a plugin's folder, and again after removing it)."""
    ENGINES.clear()


def discover(found: Iterable[importlib.metadata.EntryPoint] | None = None) -> EngineRegistry:
    """Every declaration: the built-ins, then `found` (default: the installed entry points of
    the group)."""
    return ENGINES.discover(found)


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
