"""Hybrid runs: local devices first, a remote profile when it pays.

A local profile may name a spill-over profile (`spill:` in profiles.py). Its jobs keep their
keys and rows; what changes is which backend of the run may claim them (ledger/routes.py):
the local pool claims the jobs on their own side, the Replicate backend those sent to it.
Three rules send jobs across, each recorded in the ledger with its reason:

- deadline: the local devices cannot finish what is left before the run's time limit at the
  rate they have been measured at (window.room): the tail units go, last in the run's order
  first, until the rest fits;
- failures: a job has failed locally `after_failures` times;
- unavailable: no local device can run the engine (it does not import here, or it did not
  load on a worker).

Only while the budget allows: each job is priced at what the Replicate backend reserves for it
before its create (cost.worst_case), and a unit goes only if what this run has sent fits the
spill budget. When the remote backend
stops at a cap, the jobs still waiting for it come back to the local pool. With
`mode: whole-chapters` (the default) a chapter renders on one backend: a unit goes only whole,
before the local pool has started it, so no chapter mixes two voices.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from songbatch.cost import remote_model_name, worst_case
from songbatch.errors import ProfileError
from songbatch.ledger import Lease, Ledger, SpillJob, SpillReason, SpillUnit
from songbatch.profiles import Profile, ReplicateConfig, Spill, resolve_profile
from songbatch.remote.mapping import InputError, model_input
from songbatch.workspace import Workspace

# Seconds between two looks at the deadline: a look reads every pending job of the pool's
# manifests, and the measured rate moves slowly.
DEADLINE_CHECK_S = 1.0


@dataclass(frozen=True)
class SpillTarget:
    """A hybrid manifest's spill-over: the remote profile, the rules, and the kinds of its jobs
    that no local device can render (their engine does not import here)."""

    profile: Profile
    rules: Spill
    unavailable: frozenset[str] = frozenset()


@dataclass
class SpillLink:
    """What the local pools of a run and its spill-over backend share: the routes' budget,
    how a routed job maps to a remote model, and who to wake."""

    ledger: Ledger
    run_id: int
    config: ReplicateConfig  # the spill-over profile's
    models: dict[str, str]  # job kind -> the spill-over profile's model for it
    targets: dict[int, SpillTarget]  # by manifest id: the run's hybrid manifests
    budget_usd: float
    routed_usd: float = 0.0  # the worst case of what this run has sent
    closed: bool = False  # the spill-over backend stopped at a cap: nothing more goes
    open_pools: int = 0  # local pools that may still send jobs
    fresh: bool = False  # jobs sent since the spill-over backend last looked
    _wakers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def manifest_ids(self) -> list[int]:
        return list(self.targets)

    @property
    def open(self) -> bool:
        """Whether more jobs may still come: the spill-over backend waits for them."""
        return self.open_pools > 0 and not self.closed

    def remote_lease(self, lease: Lease) -> Lease:
        """A routed job's lease as the spill-over backend reads it: its profile's model."""
        return replace(lease, model=self.models[lease.kind])

    def price(self, job: SpillJob) -> float | None:
        """What the spill-over backend reserves for the job before its create (its worst case:
        cost.worst_case); None when the model refuses its input (a chunk longer than the
        model's limit): then it stays local. Sending no more than those reservations add up to
        means the spill-over never stops at its cap half way through a chapter."""
        name = remote_model_name(self.config, job.kind, self.models[job.kind], job.request)
        model = self.config.models[name]
        try:
            values = model_input(model, job.request, voice_url=_VOICE_PLACEHOLDER)
        except InputError:
            return None
        return worst_case(self.config, model, values, job.est_ms / 1000).usd

    def send(
        self,
        unit: SpillUnit,
        jobs: Sequence[SpillJob],
        reason: SpillReason,
        failed: Sequence[str] = (),
    ) -> int:
        """Route `jobs` (of `unit`) if the budget covers them; how many went."""
        prices = [self.price(job) for job in jobs]
        if self.closed or not jobs or any(p is None for p in prices):
            return 0
        usd = sum(p for p in prices if p is not None)
        if self.routed_usd + usd > self.budget_usd + 1e-12:
            return 0
        moved = self.ledger.route_to_spill(
            [job.key for job in jobs],
            reason,
            run_id=self.run_id,
            manifest_id=unit.manifest_id,
            failed=failed,
        )
        if moved:
            self.routed_usd += usd * moved / len(jobs)
            self.fresh = True
        return moved

    def take_fresh(self) -> bool:
        fresh, self.fresh = self.fresh, False
        return fresh

    def on_back(self, waker: Callable[[], None]) -> None:
        self._wakers.append(waker)

    def stop(self) -> int:
        """The spill-over backend stopped at a cap: what still waits for it comes back (but a
        chapter it has started keeps one voice, and waits for the next run)."""
        self.closed = True
        whole = any(t.rules.mode == "whole-chapters" for t in self.targets.values())
        back = self.ledger.route_back(self.manifest_ids, keep_whole_units=whole)
        for wake in self._wakers:
            wake()
        return back


# `voice` inputs are URLs of uploaded files, made at create time: for pricing and the model's
# limits any stand-in does.
_VOICE_PLACEHOLDER = "https://example.invalid/voice"


class SpillPolicy:
    """One local pool's side of a hybrid run: it decides what goes, the link carries it."""

    def __init__(
        self,
        link: SpillLink,
        pool_ids: Sequence[int],
        *,
        clock: Callable[[], float] = time.monotonic,
        observe: Callable[[str, dict[str, Any]], None] = lambda message, data: None,
    ) -> None:
        self.link = link
        self.pool_ids = list(pool_ids)  # every manifest the pool renders
        self.hybrid_ids = [i for i in pool_ids if i in link.targets]
        self.clock = clock
        self.observe = observe
        self.spilled = 0
        self._next_look = 0.0
        self._finished = False
        link.open_pools += 1

    def start(self) -> None:
        """What this pool cannot run at all goes first; and a new run decides afresh what a
        killed or stopped one had sent (its routed jobs still pending come back)."""
        whole = any(self._rules(i).mode == "whole-chapters" for i in self.hybrid_ids)
        self.link.ledger.route_back(self.hybrid_ids, keep_whole_units=whole)
        self._send_unavailable(lambda mid: self.link.targets[mid].unavailable)

    def can_take_engine(self, kind: str) -> bool:
        """The pool's engine for `kind` did not load on a device: whether its jobs can all go
        across (no manifest of the pool that keeps such jobs here has any left)."""
        keeping = [
            i
            for i in self.pool_ids
            if i not in self.hybrid_ids or not self._rules(i).on_unavailable
        ]
        return not keeping or not self.link.ledger.own_pending(keeping, kinds=[kind])

    def take_engine(self, kind: str) -> None:
        """Send every job of `kind` across (after `can_take_engine`); the pool claims none."""
        self._send_unavailable(lambda mid: frozenset({kind}))

    def _send_unavailable(self, kinds_of: Callable[[int], frozenset[str]]) -> None:
        for unit in self.link.ledger.spill_units(self.hybrid_ids):
            kinds = kinds_of(unit.manifest_id)
            if not self._rules(unit.manifest_id).on_unavailable or not kinds:
                continue
            if any(job.kind in kinds for job in unit.jobs):
                # A unit the pool cannot finish goes whole, even one it has started.
                self._send(unit, unit.jobs, SpillReason.UNAVAILABLE)

    def after_failure(self, key: str, failures: int, *, for_good: bool) -> bool:
        """A job failed here (`failures` charged so far; `for_good`: it will not be tried here
        again): whether it went to the spill-over backend instead."""
        found = self.link.ledger.spill_units(self.hybrid_ids, failed=[key])
        for unit in found:
            job = next((j for j in unit.jobs if j.key == key), None)
            if job is None:
                continue
            rules = self._rules(unit.manifest_id)
            if rules.after_failures is None or (failures < rules.after_failures and not for_good):
                return False
            if rules.mode == "chunks":
                return self._send(unit, [job], SpillReason.FAILURES, [key]) > 0
            if unit.started_locally:
                # Its chapter is under way here (its own failed attempts do not count): one
                # voice per chapter, so it stays.
                return False
            return self._send(unit, unit.jobs, SpillReason.FAILURES, [key]) > 0
        return False

    def check_deadline(self, capacity: int | None, claimed: int) -> None:
        """`capacity`: jobs the pool's devices can still take and finish in time (None: no
        time limit, or nothing measured yet); `claimed`: leases it holds but has not handed
        out. When its own pending jobs exceed that, the tail goes."""
        now = self.clock()
        if capacity is None or self.link.closed or now < self._next_look or not self.hybrid_ids:
            return
        self._next_look = now + DEADLINE_CHECK_S
        over = self.link.ledger.own_pending(self.pool_ids) + claimed - capacity
        if over <= 0:
            return
        for unit in reversed(self.link.ledger.spill_units(self.hybrid_ids)):
            rules = self._rules(unit.manifest_id)
            if not rules.on_deadline:
                continue
            if rules.mode == "whole-chapters" and unit.started_locally:
                continue
            over -= self._send(unit, unit.jobs, SpillReason.DEADLINE)
            if over <= 0:
                return

    def finished(self) -> None:
        if not self._finished:
            self._finished = True
            self.link.open_pools -= 1

    def _rules(self, manifest_id: int) -> Spill:
        return self.link.targets[manifest_id].rules

    def _send(
        self,
        unit: SpillUnit,
        jobs: Sequence[SpillJob],
        reason: SpillReason,
        failed: Sequence[str] = (),
    ) -> int:
        moved = self.link.send(unit, jobs, reason, failed)
        if moved:
            self.spilled += moved
            self.observe(
                f"{moved} job(s) to the spill-over ({reason})",
                {"reason": str(reason), "jobs": moved, "unit": unit.unit},
            )
        return moved


def spill_target(profile: Profile, workspace: Workspace | None) -> SpillTarget | None:
    """A local profile's spill-over: `spill.to` names a profile (looked up as `--profile` names
    are) or a path from the profile's own folder; it must render on Replicate."""
    if profile.spill is None:
        return None
    try:
        target = resolve_profile(None, profile.spill.to, workspace, base_dir=profile.path.parent)
    except ProfileError as exc:
        raise ProfileError(profile.path, f"spill.to: {exc}") from None
    if not target.remote:
        raise ProfileError(
            profile.path,
            f"spill.to: {profile.spill.to!r} renders locally; a spill-over goes to a profile"
            " whose engines are replicate",
        )
    return SpillTarget(target, profile.spill)


def spill_budget(target: Profile, rules: Sequence[Spill], max_spend: float | None) -> float | None:
    """The most a run's spill may spend: the smallest of --max-spend, the spill-over profile's
    per-run cap and every hybrid profile's `spill.max_spend`; None when none is set."""
    assert target.replicate is not None
    caps = [max_spend, target.replicate.max_spend_per_run, *(r.max_spend for r in rules)]
    known = [cap for cap in caps if cap is not None]
    return min(known) if known else None
