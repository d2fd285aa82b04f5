"""Which backends exist: the built-ins (`local`, `ray`) and third parties' plugins, found
through the `songbatch.backends` entry points (the engines' loader and rules, entrypoints.py).

A backend is declared by a `BackendPlugin`, published in the entry-point group
`songbatch.backends`: the entry point's name is the backend's name (what a profile's
`executor:` and `render --backend` say) and its value (`module:attribute`) names a
`BackendPlugin`, or a callable taking no arguments that returns one, in a *light* module (the
coordinator loads every declaration to check a profile: import a cluster's client in
`transport`, not at the top).

A backend is a *transport* (executors/transport.py), not a scheduler: songbatch's coordinator
(`LocalExecutor`) keeps the ledger, the leases, the batching, the heartbeats, the fenced
publish, dead workers, the deadline and the spill, and asks the plugin's `WorkerTransport`
only where workers run and how to reach them. Replicate is not one: it is an API client with
a budget and a rate limit of its own (remote/), chosen by a profile's `replicate` engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from songbatch.entrypoints import DeclarationError, PluginGroup, Registry
from songbatch.errors import InputError

if TYPE_CHECKING:
    from songbatch.executors.devices import DeviceSlot
    from songbatch.executors.transport import WorkerTransport
    from songbatch.profiles import Profile

GROUP = "songbatch.backends"
# The built-ins, as pyproject.toml registers them (tests/test_backend_plugins.py holds the two
# equal).
BUILTIN_BACKENDS = {
    "local": "songbatch.executors.builtin:LOCAL",
    "ray": "songbatch.executors.builtin:RAY",
}


def _installed() -> None:
    pass


def _no_settings(profile: Profile) -> object:
    return None


@dataclass(frozen=True)
class BackendPlugin:
    """A backend's declaration: how to make its transport, read without making one."""

    # transport(profile, slots) -> WorkerTransport: the workers of one pool. `slots` are the
    # pool's devices (`--devices`, else the profile's `devices`) when `uses_devices`, else [].
    transport: Callable[[Profile, Sequence[DeviceSlot]], WorkerTransport]
    description: str = ""  # one line, for `doctor`
    # Whether its workers are this machine's devices: `--devices` and `devices:` place them,
    # and two pools may not share a GPU. False: the transport finds its own (a cluster's).
    uses_devices: bool = True
    # Raise InputError (with an install hint) before anything is written if the backend's
    # packages are missing.
    check_installed: Callable[[], None] = _installed
    # What else manifests sharing one pool of this backend must agree on (a cluster address),
    # compared as a value; None: nothing.
    settings: Callable[[Profile], object] = _no_settings


BackendRegistry = Registry[BackendPlugin]


def _check(value: BackendPlugin) -> None:
    if not callable(value.transport):
        raise DeclarationError("its BackendPlugin's transport is not callable")
    if not callable(value.check_installed) or not callable(value.settings):
        raise DeclarationError("its BackendPlugin's check_installed and settings must be callable")


BACKENDS = PluginGroup(
    GROUP,
    BackendPlugin,
    BUILTIN_BACKENDS,
    _check,
    spelled="songbatch.executors.registry.BackendPlugin",
    # A profile names Replicate by its engine, never as an executor.
    reserved={"replicate": "the remote backend's"},
    what="a built-in backend's",
)


def backend_registry() -> BackendRegistry:
    """The backends of this process, discovered on first use."""
    return BACKENDS.registry()


def clear_backend_cache() -> None:
    """Forget the discovered backends (a test that put a plugin on sys.path)."""
    BACKENDS.clear()


def known_backends() -> list[str]:
    """The built-ins first (local, ray), then plugins' backends that load."""
    registry = backend_registry()
    return [*(n for n in BUILTIN_BACKENDS), *registry.plugins()]


def backend_problem(name: str, said: str | None = None) -> str | None:
    """Why `name` names no usable backend (one line, about `said`: what named it, by default
    "backend NAME"), or None if it does."""
    registry = backend_registry()
    if name in registry.entries:
        return None
    said = said or f"backend {name!r}"
    problem = registry.broken.get(name)
    if problem is not None:
        return f"{said} is unavailable: {problem.reason}: {problem.fix}"
    plugins = registry.plugins()
    known = " or ".join(BUILTIN_BACKENDS)
    if plugins:
        known += f", or a plugin's: {', '.join(plugins)}"
    return f"{said}: expected {known}"


def backend_plugin(name: str) -> BackendPlugin:
    """The registered backend `name`; InputError if there is none."""
    problem = backend_problem(name)
    if problem is not None:
        raise InputError(problem)
    return backend_registry().entries[name]


__all__ = [
    "BUILTIN_BACKENDS",
    "GROUP",
    "BackendPlugin",
    "BackendRegistry",
    "backend_plugin",
    "backend_problem",
    "backend_registry",
    "clear_backend_cache",
    "known_backends",
]
