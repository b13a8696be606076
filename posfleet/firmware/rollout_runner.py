"""The background task that advances rollouts, wave by wave, from the stored Actions.

Every central instance runs one :class:`RolloutRunner`; each round it takes the **lease**
of every rollout with work to do (a conditional update of ``rollouts.lease_owner`` /
``lease_until``: only where the lease is free, expired or already its own), so one
instance at a time advances a rollout, and another takes over when the first stops (it
gives its leases back) or dies (its leases run out). All state is in the store, so a
restarted centre resumes where the rollout stands. A rollout offers one image to one
terminal once: the store's unique key on (rollout, terminal, artifact) refuses a second
Action even if two instances ever raced.

One round for a running rollout:

1. link Actions made but not recorded; terminals that started matching join
   (``joined_late``) the current wave while it offers, else the next;
2. a pending current wave starts: each terminal gets its offer time (the policy's rate
   limit with jitter, :func:`~posfleet.firmware.rollout_planner.next_offer_times`);
3. the offers due are pushed through :class:`~posfleet.firmware.offers.FirmwareOffers`
   (the ordinary push path: checks, Actions with a deadline, ``fw/offer``), never more
   than ``offers_per_minute`` in any minute;
4. :func:`~posfleet.firmware.rollout_machine.decide_wave` reads the wave's Actions: too
   many failures pause (or abort) the rollout at once, all final and enough succeeded
   starts the soak, the soak over runs the **health gate** (the updated terminals' soak
   figures against their own baseline, :mod:`~posfleet.firmware.rollout_health`): a
   regression pauses the rollout with the figures as its reason and opens the fleet
   incident (:mod:`~posfleet.firmware.rollout_incident`); a pass starts the next wave,
   or finishes the rollout after the last.

A rolled-back rollout offers the rollback image to every terminal it updated (rate-limited,
with the downgrade confirmed) until none is left and none of its own Actions is open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.firmware.artifacts import get_artifact
from posfleet.firmware.background_loop import BackgroundLoop
from posfleet.firmware.offers import FirmwareOffers, PushRequest, PushResult
from posfleet.firmware.rollout_gate import evaluate
from posfleet.firmware.rollout_health import WaveHealth, wave_health
from posfleet.firmware.rollout_incident import open_regression_incident
from posfleet.firmware.rollout_machine import DecisionKind, WaveDecision, decide_wave
from posfleet.firmware.rollout_model import RolloutState, WaveState
from posfleet.firmware.rollout_planner import offer_budget
from posfleet.firmware.rollout_queries import all_final_at, get_rollout, progress_of
from posfleet.firmware.rollout_records import RolloutRecord, WaveRecord
from posfleet.firmware.rollout_steps import (
    add_joiners,
    due_targets,
    link_actions,
    move_to_wave,
    next_offer_due,
    open_main_actions,
    recent_offers,
    record_push,
    release_leases,
    rollback_due,
    runnable_ids,
    set_wave,
    start_wave,
    take_lease,
    updated_terminals,
)
from posfleet.firmware.rollout_transitions import cancel_pending, record_transition
from posfleet.store.engine import write_transaction
from posfleet.store.schema import rollouts

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(seconds=5)
DEFAULT_LEASE = timedelta(seconds=60)
JOINER_SCAN = timedelta(seconds=10)
"""How often each rollout looks for terminals that started matching."""
SCAN_OVERLAP = timedelta(minutes=10)
"""How far back each look reaches before the previous one (clocks of instances differ)."""
MAX_OFFERS_PER_PUSH = 1000
"""The push path's own limit of terminals per push."""
MIN_PAUSE_S = 0.2
"""The shortest wait between rounds while offers fall due (they go out in batches)."""


@dataclass(slots=True)
class RunnerStats:
    """What the runner did since it started."""

    rounds: int = 0
    failures: int = 0
    offered: int = 0
    joined: int = 0
    waves_passed: int = 0
    paused: int = 0
    aborted: int = 0
    finished: int = 0
    rollbacks_offered: int = 0
    leases_lost: int = 0


class RolloutRunner(BackgroundLoop):
    """Advances every rollout with work to do until the block ends; an async context manager.

    ``instance_id`` names this central instance in the leases and transitions; ``clock``
    is the time the runner decides by (tests move it on).
    """

    task_name = "rollout-runner"

    def __init__(
        self,
        engine: AsyncEngine,
        offers: FirmwareOffers,
        *,
        instance_id: str,
        clock: Callable[[], datetime] = utcnow,
        interval: timedelta = DEFAULT_INTERVAL,
        lease: timedelta = DEFAULT_LEASE,
        joiner_scan: timedelta = JOINER_SCAN,
    ) -> None:
        self.engine = engine
        self.offers = offers
        self.instance_id = instance_id[:128]
        self.actor = f"system:rollout-runner/{instance_id}"[:128]
        self.clock = clock
        self.interval = interval
        self.lease = lease
        self.joiner_scan = joiner_scan
        self.stats = RunnerStats()
        self._scanned: dict[int, datetime] = {}
        self._wake = asyncio.Event()

    async def _after_stop(self) -> None:
        try:
            await release_leases(self.engine, self.instance_id)
        # The database may be gone at shutdown: the leases then simply run out.
        except Exception as error:
            log.warning("rollout leases of %s not released: %s", self.instance_id, error)

    def wake(self) -> None:
        """Run a round now (a rollout was started or resumed)."""
        self._wake.set()

    async def _run(self) -> None:
        while not self.stopping:
            self._wake.clear()
            try:
                await self.tick()
                pause = await self._pause_after_round()
            # The database or the broker briefly away: next round.
            except Exception as exc:
                self.stats.failures += 1
                log.warning("rollout round failed: %s", exc)
                pause = self.interval.total_seconds()
            await self._nap(pause, self._wake)

    async def _pause_after_round(self) -> float:
        """Seconds until the next round: the interval, or less when an offer falls due
        sooner (a paced wave goes out at its pace, not at the interval's)."""
        async with self.engine.connect() as conn:
            due = await next_offer_due(conn, self.instance_id)
        pause = self.interval.total_seconds()
        if due is not None:
            pause = min(pause, max((due - self.clock()).total_seconds(), MIN_PAUSE_S))
        return pause

    async def tick(self) -> int:
        """One round over every rollout with work to do; how many this instance advanced."""
        async with self.engine.connect() as conn:
            ids = await runnable_ids(conn)
        advanced = 0
        for rollout_id in ids:
            if not await take_lease(
                self.engine, rollout_id, self.instance_id, now=self.clock(), ttl=self.lease
            ):
                continue
            try:
                await self._advance(rollout_id)
                advanced += 1
            except Exception:
                self.stats.failures += 1
                log.exception("rollout #%d could not be advanced", rollout_id)
        self.stats.rounds += 1
        return advanced

    async def _still_mine(self, rollout_id: int, state: RolloutState) -> bool:
        if await take_lease(
            self.engine, rollout_id, self.instance_id, now=self.clock(), ttl=self.lease,
            state=state,
        ):  # fmt: skip
            return True
        self.stats.leases_lost += 1
        log.warning("lost the lease of rollout #%d; another instance goes on", rollout_id)
        return False

    async def _advance(self, rollout_id: int) -> None:
        async with self.engine.connect() as conn:
            rollout = await get_rollout(conn, rollout_id)
        if rollout.state is RolloutState.ROLLED_BACK:
            await self._roll_back(rollout)
            return
        for _ in range(len(rollout.policy.waves) + 1):
            if not await self._prepare(rollout_id) or not await self._offer_due(rollout_id):
                return
            if not await self._decide(rollout_id):
                return

    async def _prepare(self, rollout_id: int) -> bool:
        """Link, add joiners, start the current wave; False if nothing more to do now."""
        now = self.clock()
        async with write_transaction(self.engine) as conn:
            rollout = await get_rollout(conn, rollout_id, for_update=True)
            if rollout.state is not RolloutState.RUNNING:
                return False
            await link_actions(conn, rollout)
            last = self._scanned.get(rollout_id)
            if last is None or now - last >= self.joiner_scan:
                # Since the start the first time, then since the last look; with an
                # overlap, as the registry's times are the ingest's clock, not this one.
                since = (rollout.started_at or now if last is None else last) - SCAN_OVERLAP
                artifact = await get_artifact(conn, rollout.artifact_id)
                assert artifact is not None
                joined = await add_joiners(
                    conn, rollout, artifact.signed_manifest.manifest, now=now, since=since
                )
                self._scanned[rollout_id] = now
                if joined:
                    self.stats.joined += len(joined)
                    log.info("rollout #%d: %d terminal(s) joined", rollout_id, len(joined))
            if rollout.waves[rollout.current_wave].state is WaveState.PENDING:
                await start_wave(conn, rollout, rollout.current_wave, now=now)
        return True

    async def _offer_due(self, rollout_id: int) -> bool:
        """Push the offers due now, within the rate limit; False if the lease was lost."""
        now = self.clock()
        async with self.engine.connect() as conn:
            rollout = await get_rollout(conn, rollout_id)
            recent = await recent_offers(conn, rollout.id, rollout.artifact_id, now=now)
            budget = min(offer_budget(recent, rollout.policy, now=now), MAX_OFFERS_PER_PUSH)
            due = await due_targets(conn, rollout, now=now, limit=budget)
        if not due:
            return True
        if not await self._still_mine(rollout_id, RolloutState.RUNNING):
            return False
        result = await self._push(rollout, due, rollback=False)
        if result.created:
            await self._undo_if_stopped(rollout_id)
        return True

    async def _undo_if_stopped(self, rollout_id: int) -> None:
        """Staff aborted or rolled back the rollout while a push was under way: its new
        Actions are cancelled like the ones the command found."""
        async with write_transaction(self.engine) as conn:
            rollout = await get_rollout(conn, rollout_id, for_update=True)
            if rollout.state not in (RolloutState.ABORTED, RolloutState.ROLLED_BACK):
                return
            why = f"rollout #{rollout_id} was {rollout.state.value.replace('_', ' ')} meanwhile"
            await cancel_pending(conn, rollout, actor=self.actor, now=self.clock(), why=why)

    async def _push(
        self, rollout: RolloutRecord, terminal_ids: list[str], *, rollback: bool
    ) -> PushResult:
        artifact_id = rollout.rollback_artifact_id if rollback else rollout.artifact_id
        request = PushRequest(
            artifact=str(artifact_id),
            terminal_ids=terminal_ids,
            window=rollout.policy.window,
            allow_downgrade_confirmed=rollback,
            deadline=rollout.policy.action_deadline,
            reason=f"rollout #{rollout.id} {rollout.name}" + (" rolled back" if rollback else ""),
            rollout_id=rollout.id,
        )
        result = await self.offers.push(request, actor=f"rollout:{rollout.id}")
        # Counted now: the Actions exist even if linking them below fails; the next
        # round's link_actions() links them then.
        if rollback:
            self.stats.rollbacks_offered += len(result.created)
        else:
            self.stats.offered += len(result.created)
        async with write_transaction(self.engine) as conn:
            await record_push(conn, rollout, result, rollback=rollback)
        return result

    async def _decide(self, rollout_id: int) -> bool:
        """Apply the current wave's decision; True if the next wave is now current."""
        now = self.clock()
        async with self.engine.connect() as conn:
            rollout = await get_rollout(conn, rollout_id)
            wave = rollout.waves[rollout.current_wave]
            final_at = await all_final_at(conn, rollout_id, wave.wave)
        progress = progress_of(wave, started_at=rollout.started_at or now, all_final_at=final_at)
        decision = decide_wave(progress, wave.spec, now=now, accepted=wave.accepted_by is not None)
        health: WaveHealth | None = None
        until = now if final_at is None else final_at + wave.spec.soak
        if decision.kind is DecisionKind.ADVANCE and _gated(wave) and final_at is not None:
            async with self.engine.connect() as conn:
                updated = await updated_terminals(conn, rollout_id, wave.wave)
                health = await wave_health(conn, updated, until=until)
        if not await self._still_mine(rollout_id, RolloutState.RUNNING):
            return False
        async with write_transaction(self.engine) as conn:
            fresh = await get_rollout(conn, rollout_id, for_update=True)
            if fresh.state is not RolloutState.RUNNING or fresh.current_wave != wave.wave:
                return False
            return await self._apply(conn, fresh, wave, decision, health, until=until, now=now)

    async def _apply(
        self,
        conn: AsyncConnection,
        rollout: RolloutRecord,
        wave: WaveRecord,
        decision: WaveDecision,
        health: WaveHealth | None,
        *,
        until: datetime,
        now: datetime,
    ) -> bool:
        w = wave.wave
        if decision.kind is DecisionKind.KEEP_GOING:
            state = decision.wave_state
            if state is not wave.state or decision.soak_until != wave.soak_until:
                await set_wave(conn, rollout.id, w, state=state.value,
                               soak_until=decision.soak_until, reason=decision.reason)  # fmt: skip
            return False
        if decision.kind in (DecisionKind.PAUSE, DecisionKind.ABORT):
            await set_wave(conn, rollout.id, w, state=WaveState.FAILED.value,
                           reason=decision.reason, finished_at=now)  # fmt: skip
            await self._stop(conn, rollout, decision.kind, decision.reason, now=now)
            return False
        gate: dict[str, Any] = {}
        if health is not None:
            verdict = evaluate(health.before, health.after, rollout.policy.gate)
            gate = {**verdict.to_json(), "without_figures": list(health.without_figures),
                    "window_end": until.isoformat()}  # fmt: skip
            if not verdict.passed:
                incident_id = await open_regression_incident(
                    conn, rollout, w, verdict, health, now=now
                )
                reason = f"health gate after wave {w + 1}: {verdict.summary()}"
                gate["incident_id"] = incident_id
                await set_wave(conn, rollout.id, w, state=WaveState.FAILED.value, reason=reason,
                               finished_at=now, gate=gate)  # fmt: skip
                await self._stop(conn, rollout, DecisionKind.PAUSE, reason, now=now,
                                 incident_id=incident_id)  # fmt: skip
                return False
        elif not _gated(wave):
            gate = {"skipped": _skip_reason(wave)}
        await set_wave(conn, rollout.id, w, state=WaveState.PASSED.value, reason=decision.reason,
                       finished_at=now, gate=gate or None)  # fmt: skip
        self.stats.waves_passed += 1
        if w + 1 < len(rollout.waves):
            return await move_to_wave(conn, rollout.id, current=w, now=now)
        await record_transition(
            conn, rollout, "finish", actor=self.actor, reason_code=rollout.reason_code,
            reason_text=f"every wave passed ({rollout.totals.succeeded} terminals updated)",
            now=now, to_state=RolloutState.FINISHED, values={"finished_at": now},
        )  # fmt: skip
        self.stats.finished += 1
        log.info("rollout #%d (%s) finished", rollout.id, rollout.name)
        return False

    async def _stop(
        self,
        conn: AsyncConnection,
        rollout: RolloutRecord,
        kind: DecisionKind,
        reason: str,
        *,
        now: datetime,
        incident_id: int | None = None,
    ) -> None:
        values: dict[str, Any] = {"paused_reason": reason}
        if incident_id is not None:
            values["incident_id"] = incident_id
        if kind is DecisionKind.ABORT:
            cancelled = await cancel_pending(conn, rollout, actor=self.actor, now=now, why=reason)
            await record_transition(
                conn, rollout, "abort", actor=self.actor, reason_code="other",
                reason_text=reason, now=now, to_state=RolloutState.ABORTED,
                values={**values, "finished_at": now}, detail={"cancelled": cancelled},
            )  # fmt: skip
            self.stats.aborted += 1
        else:
            await record_transition(
                conn, rollout, "pause", actor=self.actor, reason_code="other",
                reason_text=reason, now=now, to_state=RolloutState.PAUSED, values=values,
                detail={"incident_id": incident_id} if incident_id else None,
            )  # fmt: skip
            self.stats.paused += 1
        log.warning("rollout #%d (%s) stopped: %s", rollout.id, rollout.name, reason)

    async def _roll_back(self, rollout: RolloutRecord) -> None:
        """Offer the rollback image to the terminals updated; done once none is left."""
        now = self.clock()
        async with write_transaction(self.engine) as conn:
            await link_actions(conn, rollout)
        back = rollout.rollback_artifact_id
        assert back is not None  # rollback_rollout sets it
        async with self.engine.connect() as conn:
            recent = await recent_offers(conn, rollout.id, back, now=now)
            budget = min(offer_budget(recent, rollout.policy, now=now), MAX_OFFERS_PER_PUSH)
            due = await rollback_due(conn, rollout, limit=budget)
        if due:
            if not await self._still_mine(rollout.id, RolloutState.ROLLED_BACK):
                return
            await self._push(rollout, due, rollback=True)
        async with write_transaction(self.engine) as conn:
            left = await rollback_due(conn, rollout, limit=1)
            if left or await open_main_actions(conn, rollout):
                return
            await conn.execute(
                rollouts.update()
                .where(rollouts.c.id == rollout.id, rollouts.c.finished_at.is_(None))
                .values(finished_at=now, updated_at=now)
            )
        log.info("rollout #%d rolled back: every updated terminal was offered %s",
                 rollout.id, rollout.rollback_artifact)  # fmt: skip


def _gated(wave: WaveRecord) -> bool:
    """Whether the wave's advance runs the health gate."""
    return _skip_reason(wave) == ""


def _skip_reason(wave: WaveRecord) -> str:
    if wave.counts.terminals == 0:
        return "no terminals in this wave"
    if wave.spec.soak <= timedelta(0):
        return "no soak time: nothing to measure"
    if wave.accepted_by is not None and wave.gate is not None and not wave.gate.passed:
        return f"accepted by {wave.accepted_by} after the gate failed"
    return ""
