"""Which backends a run needs, and building them.

A run's manifests go to backends by their profiles: every manifest whose profile renders
remotely to the Replicate backend, the others to a local worker pool per set of devices and
settings. `group_backends` decides that before anything is written, and refuses what one run
cannot do: two Replicate setups (one account's rate limit and spend caps are one limiter and
one budget), two pools wanting one GPU (one job per device at a time), one engine and model set
up two ways (a worker loads each once). A hybrid manifest (its profile has `spill:`) is in a
local pool and also in the Replicate backend of its spill-over profile, which takes the jobs
the pool sends it (spill.py); that backend is the run's one Replicate set-up like any other.
`build_backend` makes the executor for a group; the scheduler (scheduler.py) drives them all
in one loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from songbatch.engines.base import EngineSpec
from songbatch.errors import InputError
from songbatch.events import Observer, RunEvent
from songbatch.executors.devices import DeviceSlot, parse_devices
from songbatch.executors.local import ExecutorSettings, LocalExecutor
from songbatch.executors.registry import BackendPlugin, backend_plugin
from songbatch.executors.worker import spec_id
from songbatch.ledger import Ledger
from songbatch.profiles import Profile
from songbatch.scheduler import Backend
from songbatch.workspace import Workspace

if TYPE_CHECKING:
    from songbatch.remote.executor import RemoteHooks
    from songbatch.spill import SpillLink, SpillPolicy, SpillTarget


@dataclass(frozen=True)
class Member:
    """A manifest as the grouping sees it: a name for messages, its profile, its engines."""

    name: str
    profile: Profile
    specs: tuple[EngineSpec, ...]
    spill: SpillTarget | None = None  # a hybrid manifest's spill-over


@dataclass
class BackendGroup:
    """The manifests one backend renders (indices into the run's list), on what."""

    members: list[int]
    profile: Profile  # the first member's: every member's agrees on what the backend uses
    specs: dict[str, EngineSpec] = field(default_factory=dict)  # by spec id, its engines
    slots: list[DeviceSlot] = field(default_factory=list)  # a local pool's workers
    spill_members: list[int] = field(default_factory=list)  # hybrid manifests it takes jobs of

    @property
    def remote(self) -> bool:
        return self.profile.remote

    def add(self, index: int, specs: Sequence[EngineSpec]) -> None:
        self.members.append(index)
        for spec in specs:
            self.specs.setdefault(spec_id(spec.kind, spec.engine, spec.model), spec)


def group_backends(
    members: Sequence[Member], devices: str | None
) -> tuple[list[BackendGroup], list[str]]:
    """The run's backends, in the order their first manifests come, and the warnings their
    devices give (`parse_devices`). `devices`: --devices, which every local profile then uses.
    Raises InputError for what one run cannot drive."""
    _check_engines_agree(members)
    groups: list[BackendGroup] = []
    settings: list[dict[str, object]] = []
    for index, member in enumerate(members):
        mine = _settings(member.profile, devices is not None)
        for group, theirs in zip(groups, settings, strict=True):
            if theirs == mine:
                group.add(index, member.specs)
                break
        else:
            group = BackendGroup([], member.profile)
            group.add(index, member.specs)
            groups.append(group)
            settings.append(mine)
    _add_spill_overs(groups, members, settings, devices is not None)
    _one_remote(groups, members, settings)
    warnings = _place_devices(groups, members, settings, devices)
    return groups, warnings


def _plugin(profile: Profile) -> BackendPlugin | None:
    """The registered backend of a local profile's pool (executors/registry.py)."""
    return None if profile.remote else backend_plugin(profile.executor)


def _settings(profile: Profile, devices_given: bool) -> dict[str, object]:
    """What a backend is made with: manifests that agree on all of it share one."""
    plugin = _plugin(profile)
    # A Ray group's actors come from its cluster's resources, never from --devices.
    own_devices = plugin is not None and plugin.uses_devices
    return {
        "executor": "replicate" if profile.remote else profile.executor,
        "replicate": None if profile.replicate is None else profile.replicate.model_dump(),
        "backend": None if plugin is None else plugin.settings(profile),
        "devices": profile.devices if own_devices and not devices_given else None,
        "lease_seconds": profile.lease_seconds,
        "max_attempts": profile.max_attempts,
        "transient_patience_s": profile.transient_patience_s,
    }


def _check_engines_agree(members: Sequence[Member]) -> None:
    """A worker loads each engine and model once: one id must mean one set-up in a run."""
    seen: dict[str, tuple[Member, EngineSpec]] = {}
    for member in members:
        for spec in member.specs:
            first, known = seen.setdefault(
                spec_id(spec.kind, spec.engine, spec.model), (member, spec)
            )
            if known != spec:
                raise InputError(
                    f"{first.name} and {member.name} set {spec.kind} engine {spec.engine}"
                    f" model {spec.model} up differently: render them in separate runs"
                )


def _add_spill_overs(
    groups: list[BackendGroup],
    members: Sequence[Member],
    settings: list[dict[str, object]],
    devices_given: bool,
) -> None:
    """Each hybrid manifest also joins the Replicate backend of its spill-over profile: the one
    its set-up already has in this run, or one of its own."""
    for index, member in enumerate(members):
        if member.spill is None:
            continue
        target = member.spill.profile
        mine = _settings(target, devices_given)
        for group, theirs in zip(groups, settings, strict=True):
            if group.remote and theirs == mine:
                group.spill_members.append(index)
                break
        else:
            groups.append(BackendGroup([], target, spill_members=[index]))
            settings.append(mine)


def _first_name(group: BackendGroup, members: Sequence[Member]) -> str:
    if group.members:
        return members[group.members[0]].name
    spilled = members[group.spill_members[0]]
    return f"{group.profile.path.name} (the spill-over of {spilled.name})"


def _differ(first: dict[str, object], other: dict[str, object]) -> list[str]:
    return [name for name in first if first[name] != other[name]]


def _one_remote(
    groups: list[BackendGroup], members: Sequence[Member], settings: list[dict[str, object]]
) -> None:
    remote = [(g, s) for g, s in zip(groups, settings, strict=True) if g.remote]
    if len(remote) > 1:
        (first, mine), (other, theirs) = remote[0], remote[1]
        raise InputError(
            f"{_first_name(first, members)} and {_first_name(other, members)} need"
            f" different Replicate set-ups ({', '.join(_differ(mine, theirs))} differ): one"
            " run keeps one rate limit and one budget, so render them in separate runs"
        )


def _place_devices(
    groups: list[BackendGroup],
    members: Sequence[Member],
    settings: list[dict[str, object]],
    devices: str | None,
) -> list[str]:
    """Each local pool's workers. A GPU runs one job at a time, so two pools may not share
    one; CPU workers of two pools run side by side (numbered on, so each name is one
    worker's in the ledger and on screen)."""
    warnings: list[str] = []
    owner: dict[str, int] = {}  # a GPU's physical id -> the group that has it
    cpus = 0
    for index, group in enumerate(groups):
        plugin = _plugin(group.profile)
        if plugin is None or not plugin.uses_devices:
            continue
        slots, warning = parse_devices(devices or group.profile.devices)
        if warning and warning not in warnings:
            warnings.append(warning)
        for slot in slots:
            if slot.device != "cuda":
                continue
            physical = slot.env["CUDA_VISIBLE_DEVICES"]
            if physical in owner:
                earlier = owner[physical]
                _refuse_shared_gpu(
                    members, (groups[earlier], settings[earlier]), (group, settings[index]), slot
                )
            owner[physical] = index
        group.slots = [_numbered(slot, cpus + n) for n, slot in enumerate(_cpu(slots))]
        group.slots += [slot for slot in slots if slot.device == "cuda"]
        cpus += len(_cpu(slots))
    return warnings


def _cpu(slots: list[DeviceSlot]) -> list[DeviceSlot]:
    return [slot for slot in slots if slot.device != "cuda"]


def _numbered(slot: DeviceSlot, number: int) -> DeviceSlot:
    return DeviceSlot(name=f"cpu{number}", device=slot.device, env=slot.env)


def _refuse_shared_gpu(
    members: Sequence[Member],
    first: tuple[BackendGroup, dict[str, object]],
    other: tuple[BackendGroup, dict[str, object]],
    slot: DeviceSlot,
) -> None:
    differ = _differ(first[1], other[1])
    hint = " (or choose them with --devices)" if differ == ["devices"] else ""
    raise InputError(
        f"{members[first[0].members[0]].name} and {members[other[0].members[0]].name} both"
        f" want {slot.name} with different settings ({', '.join(differ)} differ): a GPU"
        f" renders one job at a time, so render them in separate runs{hint}"
    )


@dataclass
class RunContext:
    """What every backend of one run shares."""

    ledger: Ledger
    workspace: Workspace
    run_id: int
    observer: Observer
    on_published: Callable[[str], None] = lambda key: None
    time_left_s: float | None = None  # each backend's deadline, on its own clock
    max_spend: float | None = None  # --max-spend, for the Replicate backend
    remote_hooks: RemoteHooks | None = None  # tests and benchmarks: a virtual clock, a fake API
    spill: SpillLink | None = None  # a hybrid run's: what its pools and spill-over share


def build_backend(group: BackendGroup, manifest_ids: list[int], run: RunContext) -> Backend:
    """The executor that renders `manifest_ids` (the group's manifests) as its profile says;
    in a hybrid run, a pool with hybrid manifests sends work to the spill-over backend."""
    profile = group.profile
    spill = run.spill if group.spill_members else None
    if profile.remote:
        from songbatch.remote.executor import RemoteExecutor, RemoteHooks, RemoteSettings

        assert profile.replicate is not None  # the profile validator guarantees it
        hooks = run.remote_hooks or RemoteHooks()
        return RemoteExecutor(
            run.ledger,
            run.workspace,
            profile.replicate,
            run_id=run.run_id,
            manifest_ids=manifest_ids,
            settings=RemoteSettings(
                max_failures=profile.max_attempts,
                lease_s=profile.lease_seconds,
                deadline=_deadline(hooks.clock, run.time_left_s),
                # Only a spill-over: the spill's budget is its hard cap too.
                max_spend=spill.budget_usd if spill and not manifest_ids else run.max_spend,
                transient_patience_s=profile.transient_patience_s,
            ),
            observer=run.observer,
            on_published=run.on_published,
            hooks=hooks,
            spill=spill,
        )
    settings = ExecutorSettings(
        lease_s=profile.lease_seconds,
        max_failures=profile.max_attempts,
        deadline=_deadline(time.monotonic, run.time_left_s),
        transient_patience_s=profile.transient_patience_s,
    )
    policy = _spill_policy(run, manifest_ids)
    # The pool's coordinator is songbatch's whatever the backend: the plugin only says where
    # its workers run (executors/transport.py).
    plugin = backend_plugin(profile.executor)
    return LocalExecutor(
        run.ledger,
        run.workspace,
        plugin.transport(profile, group.slots),
        group.specs,
        run_id=run.run_id,
        manifest_ids=manifest_ids,
        settings=settings,
        observer=run.observer,
        on_published=run.on_published,
        spill=policy,
    )


def _spill_policy(run: RunContext, manifest_ids: list[int]) -> SpillPolicy | None:
    link = run.spill
    if link is None or not set(manifest_ids) & set(link.targets):
        return None
    from songbatch.spill import SpillPolicy

    def observe(message: str, data: dict[str, object]) -> None:
        run.observer(RunEvent("spilled", message, data=dict(data)))

    return SpillPolicy(link, manifest_ids, observe=observe)


def _deadline(clock: Callable[[], float], time_left_s: float | None) -> float | None:
    return None if time_left_s is None else clock() + time_left_s


def workers_of(group: BackendGroup) -> int:
    """Jobs the backend renders at once: its devices, or its predictions in flight."""
    replicate = group.profile.replicate
    return replicate.rate_limit.concurrency if replicate is not None else len(group.slots)
