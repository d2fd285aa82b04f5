"""Plugins through entry points: what the engine registry (engines/registry.py) and the backend
registry (executors/registry.py) share.

A group's entry point names a declaration (`module:attribute`, an instance of the group's
declaration class, or a callable taking no arguments that returns one) in a *light* module.
The built-ins are declared the same way (pyproject.toml) and are also loaded from the group's
`builtins` whatever the installed metadata says: a checkout run with PYTHONPATH=src, or an
editable install older than its pyproject, may not list them.

Rules, each reported and never silent:
- a plugin that fails to load (an ImportError or any other exception, a value that is not a
  declaration, a declaration that does not hold) makes that one name unavailable, with a
  one-line reason naming its distribution and entry point; every other name still works;
- a plugin with a built-in's name (or a reserved one) is ignored, unloaded: the built-in
  stays, and `doctor` says which package claimed the name;
- a name two distributions declare is unavailable until one of them is removed.

Discovery runs once per process and group, and is cached; `PluginGroup.clear` forgets it.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where a declaration came from: an entry point of a distribution."""

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
    """A plugin that is not used, and why (one line)."""

    name: str
    origins: tuple[Origin, ...]
    reason: str
    fix: str  # what to do, a clause: "reinstall or uninstall NAME VERSION"


@dataclass(frozen=True)
class Registry(Generic[T]):
    entries: dict[str, T]
    origins: dict[str, Origin]
    # Names a plugin declares that cannot be used (fails to load, two distributions): what
    # names one gets `reason`.
    broken: dict[str, Problem]
    # Plugins ignored because a built-in (or a reserved name) has their name.
    ignored: tuple[Problem, ...]
    # Whether songbatch's own entry points are in its installed metadata (False: a stale
    # editable install or a bare checkout; the built-ins are used all the same).
    builtins_registered: bool

    def plugins(self) -> list[str]:
        return sorted(name for name, origin in self.origins.items() if not origin.builtin)


class DeclarationError(Exception):
    """A plugin's declaration is not one that holds."""


class PluginGroup(Generic[T]):
    """One entry-point group: its built-ins, how a declaration is checked, its cache."""

    def __init__(
        self,
        group: str,
        declaration: type[T],
        builtins: Mapping[str, str],
        check: Callable[[T], None],
        *,
        spelled: str,
        reserved: Mapping[str, str] | None = None,
        what: str = "a built-in's",
    ) -> None:
        self.group = group
        self.declaration = declaration
        self.spelled = spelled  # how a plugin author imports it: "songbatch.engines.EngineEntry"
        self.builtins = dict(builtins)
        self.check = check  # raises DeclarationError for one that does not hold
        # Names no plugin may take besides the built-ins', each with whose name it is ("the
        # remote engine's"); `what` says it of a built-in's ("a built-in engine's").
        self.reserved = dict(reserved or {})
        self.what = what
        # Re-entrant: a declaration that asks for the registry while imported must not hang.
        self._lock = threading.RLock()
        self._cached: Registry[T] | None = None

    def registry(self) -> Registry[T]:
        """This process's, discovered on first use."""
        with self._lock:
            if self._cached is None:
                self._cached = self.discover()
            return self._cached

    def clear(self) -> None:
        """Forget what was discovered; the next lookup reads the entry points again."""
        with self._lock:
            self._cached = None
        importlib.invalidate_caches()  # importlib.metadata's path cache too

    def discover(self, found: Iterable[importlib.metadata.EntryPoint] | None = None) -> Registry[T]:
        """Every declaration: the built-ins, then `found` (default: the installed entry points
        of the group)."""
        if found is None:
            found = importlib.metadata.entry_points(group=self.group)
        entries: dict[str, T] = {}
        origins: dict[str, Origin] = {}
        for name, value in self.builtins.items():
            builtin = importlib.metadata.EntryPoint(name, value, self.group)
            origin = Origin(_spelled(builtin))
            # Songbatch's own declarations: one that does not load is a bug, not a plugin's.
            entries[name] = self._declared(builtin.load(), origin)
            origins[name] = origin
        registered = False
        claims: dict[str, list[tuple[importlib.metadata.EntryPoint, Origin]]] = {}
        ignored: list[Problem] = []
        for point in found:
            origin = Origin(_spelled(point), _distribution(point))
            if point.name in self.builtins and point.value == self.builtins[point.name]:
                registered = True  # the built-in's own registration (whoever's metadata lists it)
            elif point.name in self.builtins or point.name in self.reserved:
                what = self.reserved.get(point.name, self.what)
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
                dists = ", ".join(str(o.distribution) for _, o in points)
                fix = f"uninstall all but one of {dists}"
                broken[name] = Problem(name, tuple(o for _, o in points), reason, fix)
                continue
            [(point, origin)] = points
            try:
                entries[name] = self._declared(self._load(point), origin)
                origins[name] = origin
            except Exception as exc:  # a plugin's import may raise anything: reported
                reason = f"{origin.describe()} does not load: {_one_line(exc)}"
                fix = f"reinstall or uninstall {origin.distribution}"
                broken[name] = Problem(name, (origin,), reason, fix)
        return Registry(entries, origins, broken, tuple(ignored), registered)

    def _load(self, point: importlib.metadata.EntryPoint) -> Any:
        value = point.load()
        if not isinstance(value, self.declaration) and callable(value):
            value = value()
        return value

    def _declared(self, value: Any, origin: Origin) -> T:
        """`value` if it is a declaration songbatch can use; else DeclarationError."""
        if not isinstance(value, self.declaration):
            raise DeclarationError(
                f"{origin.entry_point.split(' = ')[-1]} is a {type(value).__name__}, not a"
                f" {self.spelled} (or a function returning one)"
            )
        self.check(value)
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


__all__ = ["DeclarationError", "Origin", "PluginGroup", "Problem", "Registry"]
