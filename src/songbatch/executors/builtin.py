"""The built-in backends' declarations, as pyproject.toml's `songbatch.backends` entry points
name them (executors/registry.py). Light: each transport's module is imported when a pool is
built, so that checking a profile never imports Ray."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from songbatch.executors.registry import BackendPlugin

if TYPE_CHECKING:
    from songbatch.executors.devices import DeviceSlot
    from songbatch.executors.transport import WorkerTransport
    from songbatch.profiles import Profile


def _processes(profile: Profile, slots: Sequence[DeviceSlot]) -> WorkerTransport:
    from songbatch.executors.transport import ProcessTransport

    return ProcessTransport(slots)


def _ray(profile: Profile, slots: Sequence[DeviceSlot]) -> WorkerTransport:
    from songbatch.executors.ray_backend import ray_transport

    return ray_transport(profile, slots)


def _ray_installed() -> None:
    from songbatch.executors.ray_backend import check_ray_installed

    check_ray_installed()


def _ray_settings(profile: Profile) -> object:
    """A Ray pool's cluster and actors: manifests that agree on them share one."""
    from songbatch.profiles import RayConfig, actor_device

    config = profile.ray or RayConfig()
    return {**config.model_dump(), "device": actor_device(profile)}


LOCAL = BackendPlugin(
    _processes, description="a worker process per device of this machine (--devices)"
)
RAY = BackendPlugin(
    _ray,
    description="a Ray actor per GPU (or CPU share) of a Ray cluster (docs/cluster.md)",
    uses_devices=False,
    check_installed=_ray_installed,
    settings=_ray_settings,
)
