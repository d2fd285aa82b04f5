"""A third-party backend plugin, as a package would ship one: `threads`, whose workers are
threads of the coordinator's own process (transport.py). For tests only: a pool that starts
in no time and shows that a backend is a transport (songbatch's coordinator keeps the ledger).

This module is its light declaration, named by the entry point in
tests/plugins/songbatch_test_plugins-0.0.0.dist-info/entry_points.txt: no worker code is
imported until a pool is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from songbatch.executors.registry import BackendPlugin

if TYPE_CHECKING:
    from songbatch.executors.devices import DeviceSlot
    from songbatch.executors.transport import WorkerTransport
    from songbatch.profiles import Profile


def _transport(profile: Profile, slots: Sequence[DeviceSlot]) -> WorkerTransport:
    from songbatch_threads.transport import ThreadTransport

    return ThreadTransport(slots)


BACKEND = BackendPlugin(_transport, description="worker threads in this process (tests only)")
