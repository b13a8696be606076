"""The rollout runner over the real store (SQLite and PostgreSQL) and the real push path
(in-memory publisher): waves offered at the policy's rate, advanced by their Actions,
paused by failures, joined by new terminals, aborted, rolled back, taken over by
another instance."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import Channel, UpdateState, UpdateStatus, utcnow
from posfleet.firmware.action_records import ActionRecord, list_actions
from posfleet.firmware.action_states import ActionState, RetryPolicy
from posfleet.firmware.actions import record_status
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.offers import FirmwareOffers
from posfleet.firmware.rollout_model import (
    ErrorAction,
    RolloutPolicy,
    RolloutState,
    WaveSpec,
    WaveState,
)
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.firmware.rollout_runner import DEFAULT_LEASE, RolloutRunner
from posfleet.firmware.rollout_steps import release_leases
from posfleet.firmware.rollouts import get_rollout, preview_rollout, run_command
from posfleet.store import write_transaction
from posfleet.store.schema import firmware_actions, terminals
from tests.component.firmware_rows import T0
from tests.component.rollout_rows import (
    OPS,
    Clock,
    add_fleet,
    artifacts,
    new_rollout,
    quick_policy,
    register,
)

TOKENS = DownloadTokens(b"r" * 32)


def offers_for(engine: AsyncEngine) -> tuple[FirmwareOffers, MemoryPublisher]:
    """The push path over ``engine`` with a publisher that keeps what it sends."""
    publisher = MemoryPublisher()
    service = FirmwareOffers(
        engine, TOKENS, base_url="https://fleet.example.com", publisher=publisher,
        policy=RetryPolicy(max_attempts=1),
    )  # fmt: skip
    return service, publisher


class Central:
    """One central instance's runner, its publisher and its clock."""

    def __init__(
        self, engine: AsyncEngine, name: str = "central-a", *, lease: timedelta = DEFAULT_LEASE
    ) -> None:
        self.offers, self.publisher = offers_for(engine)
        self.clock = Clock()
        self.runner = RolloutRunner(
            engine, self.offers, instance_id=name, clock=self.clock, lease=lease
        )

    async def rounds(self, n: int = 2) -> int:
        """``n`` rounds a second apart (offers at the test's rate fall due within one)."""
        advanced = 0
        for _ in range(n):
            self.clock.shift(seconds=1)
            advanced += await self.runner.tick()
        return advanced

    @property
    def offered(self) -> list[str]:
        """Terminal ids of every offer published, in order."""
        return [tid for tid, _, _ in self.publisher.sent]


async def start(engine: AsyncEngine, policy: RolloutPolicy) -> int:
    new, old = await artifacts(engine)
    rollout = await new_rollout(engine, new, policy, rollback=old)
    async with write_transaction(engine) as conn:
        await preview_rollout(conn, rollout.id, now=T0)
    await run_command(engine, "start", rollout.id, actor=OPS, actor_role="ops",
                      reason_code="bug_fix", reason_text="printer jam")  # fmt: skip
    return rollout.id


async def report(
    engine: AsyncEngine,
    publisher: MemoryPublisher,
    terminal_ids: Sequence[str],
    state: UpdateState = UpdateState.SUCCEEDED,
    *,
    at: datetime | None = None,
) -> None:
    """Each terminal answers its latest offer with ``state``, as its fw/status would (and
    after a success, its inventory names the new version)."""
    at = at or utcnow()
    async with write_transaction(engine) as conn:
        for tid in terminal_ids:
            offer = publisher.offers(tid)[-1]
            status = UpdateStatus(action_id=offer.action_id, state=state, ts=at)
            outcome = await record_status(conn, tid, status, now=at, policy=RetryPolicy())
            assert outcome.stored and outcome.decision is not None
            if state is UpdateState.SUCCEEDED:  # and its next inventory says so
                version = offer.signed_manifest.manifest.version
                await conn.execute(
                    sa.update(terminals)
                    .where(terminals.c.terminal_id == tid)
                    .values(firmware_version=version)
                )


async def rollout_of(engine: AsyncEngine, rollout_id: int) -> RolloutRecord:
    async with engine.connect() as conn:
        return await get_rollout(conn, rollout_id)


async def actions(engine: AsyncEngine) -> list[ActionRecord]:
    async with engine.connect() as conn:
        return await list_actions(conn, limit=500)


async def test_waves_advance_as_their_actions_succeed_until_the_rollout_finishes(
    engine: AsyncEngine,
) -> None:
    fleet = await add_fleet(engine, 20, sites=4)
    rollout_id = await start(engine, quick_policy(10, 50, 100))
    central = Central(engine)

    await central.rounds()
    canary = central.offered
    assert len(canary) == 2
    await central.rounds()  # nothing new while the canary is out
    assert central.offered == canary
    record = await rollout_of(engine, rollout_id)
    assert record.waves[0].state is WaveState.RUNNING
    assert record.waves[0].counts.in_progress == 2
    assert record.waves[1].state is WaveState.PENDING

    await report(engine, central.publisher, canary)
    await central.rounds()  # the canary passes (no soak: no gate), wave 2 is offered
    second = central.offered[2:]
    assert len(second) == 8 and not set(second) & set(canary)
    await report(engine, central.publisher, second)
    await central.rounds()
    third = central.offered[10:]
    assert len(third) == 10
    await report(engine, central.publisher, third)
    await central.rounds()

    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.FINISHED and record.finished_at is not None
    assert [w.state for w in record.waves] == [WaveState.PASSED] * 3
    assert all(w.gate_detail == {"skipped": "no soak time: nothing to measure"}
               for w in record.waves)  # fmt: skip
    assert record.totals.succeeded == 20
    # Every terminal was offered once, by Actions that name the rollout and carry the
    # policy's deadline.
    assert sorted(central.offered) == fleet
    made = await actions(engine)
    assert {a.rollout_id for a in made} == {rollout_id}
    assert all(a.deadline - a.created_at == timedelta(days=3) for a in made)
    assert all(a.created_by == f"rollout:{rollout_id}" for a in made)
    finish = record.transitions[-1]
    assert (finish.command, finish.actor) == ("finish", "system:rollout-runner/central-a")
    assert central.runner.stats.finished == 1 and central.runner.stats.offered == 20


async def test_offers_keep_to_the_rate_limit(engine: AsyncEngine) -> None:
    await add_fleet(engine, 12)
    policy = RolloutPolicy(waves=(WaveSpec(percent=100.0, soak=timedelta(0)),),
                           offers_per_minute=5, jitter_s=0)  # fmt: skip
    await start(engine, policy)
    central = Central(engine)
    await central.runner.tick()
    assert len(central.offered) == 1  # one offer every 12 s: the first is due at once
    await central.rounds(3)
    assert len(central.offered) == 1
    # A minute on, six offers are due (one every 12 s) but five is the most in a minute.
    central.clock.shift(seconds=58)
    await central.runner.tick()
    assert len(central.offered) == 6


async def test_a_failing_canary_pauses_the_rollout_and_nobody_else_is_offered(
    engine: AsyncEngine,
) -> None:
    await add_fleet(engine, 30, sites=6)
    policy = RolloutPolicy(
        waves=(WaveSpec(count=3, soak=timedelta(0), error_threshold=0.3),
               WaveSpec(percent=100.0, soak=timedelta(0))),
        offers_per_minute=6000, jitter_s=0,
    )  # fmt: skip
    rollout_id = await start(engine, policy)
    central = Central(engine)
    await central.rounds()
    canary = central.offered
    assert len(canary) == 3
    await report(engine, central.publisher, canary[:2], UpdateState.ROLLED_BACK)  # boot loops
    await central.rounds(3)
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.PAUSED
    assert "2 of 3 terminals in wave 1 failed" in (record.paused_reason or "")
    assert record.waves[0].state is WaveState.FAILED
    pause = record.transitions[-1]
    assert pause.command == "pause" and pause.actor.startswith("system:rollout-runner")
    assert central.offered == canary  # the other 27 were never offered

    # The operator resumes: the canary is accepted as it stands, the rest follows.
    await report(engine, central.publisher, canary[2:])
    await run_command(engine, "resume", rollout_id, actor=OPS, actor_role="ops",
                      reason_code="other", reason_text="known hardware batch")  # fmt: skip
    await central.rounds()
    assert len(central.offered) == 30
    record = await rollout_of(engine, rollout_id)
    assert record.waves[0].state is WaveState.PASSED and record.waves[0].accepted_by == OPS


async def test_the_error_threshold_may_abort_and_cancel_the_offers_pending(
    engine: AsyncEngine,
) -> None:
    await add_fleet(engine, 10)
    policy = RolloutPolicy(
        waves=(WaveSpec(count=4, soak=timedelta(0), error_threshold=0.2,
                        on_error=ErrorAction.ABORT),
               WaveSpec(percent=100.0)),
        offers_per_minute=6000, jitter_s=0,
    )  # fmt: skip
    rollout_id = await start(engine, policy)
    central = Central(engine)
    await central.rounds()
    canary = central.offered
    assert len(canary) == 4
    await report(engine, central.publisher, canary[:2], UpdateState.REJECTED)
    await central.rounds()
    record = await rollout_of(engine, rollout_id)
    states = {a.terminal_id: a.state for a in await actions(engine)}
    assert record.state is RolloutState.ABORTED and record.finished_at is not None
    assert [states[t] for t in canary[2:]] == [ActionState.CANCELLED] * 2
    await central.rounds()
    assert len(central.offered) == 4


async def test_a_terminal_that_starts_matching_joins_a_later_wave(engine: AsyncEngine) -> None:
    await add_fleet(engine, 10)
    rollout_id = await start(engine, quick_policy(10, 100))
    central = Central(engine)
    await central.rounds()
    canary = central.offered
    # A new terminal comes online with the old version; another one, too old for the
    # image (below its minimum version), is left out with its reason.
    async with write_transaction(engine) as conn:
        await register(conn, "T-NEW", seen=utcnow())
        await register(conn, "T-OLDER", firmware="4.0.0", seen=utcnow())
    central.clock.shift(minutes=1)  # the next look for newcomers
    await central.rounds()  # the canary is still out: the newcomer waits for wave 2
    record = await rollout_of(engine, rollout_id)
    assert record.waves[1].counts.joined_late == 1 and central.offered == canary
    assert record.excluded == {"below_min_version": 1}
    await report(engine, central.publisher, canary)
    await central.rounds()
    assert "T-NEW" in central.offered and len(central.offered) == 11
    assert "T-OLDER" not in central.offered


async def test_a_second_instance_takes_over_a_rollout_and_offers_nobody_twice(
    engine: AsyncEngine,
) -> None:
    fleet = await add_fleet(engine, 20)
    rollout_id = await start(engine, quick_policy(10, 50, 100))
    a, b = Central(engine, "central-a"), Central(engine, "central-b")
    assert await a.rounds(1) == 1
    assert await b.rounds(1) == 0  # a holds the lease
    await report(engine, a.publisher, a.offered)
    assert await release_leases(engine, "central-a") == 1  # what a clean stop does
    assert await b.rounds() == 2
    assert len(b.offered) == 8
    # b dies without a word: its lease runs out, then a goes on where b stood.
    await report(engine, b.publisher, b.offered)
    assert await a.rounds(1) == 0
    a.clock.shift(minutes=2)
    assert await a.rounds() == 2
    assert len(a.offered) == 12
    await report(engine, a.publisher, a.offered[2:])
    await a.rounds()
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.FINISHED
    assert sorted(a.offered + b.offered) == fleet  # once each
    assert [t.command for t in record.transitions].count("finish") == 1


async def test_a_rollback_offers_the_previous_version_to_the_updated_terminals(
    engine: AsyncEngine,
) -> None:
    await add_fleet(engine, 10)
    rollout_id = await start(engine, quick_policy(50, 100))
    central = Central(engine)
    await central.rounds()
    first = central.offered
    assert len(first) == 5
    await report(engine, central.publisher, first[:3])
    await report(engine, central.publisher, first[3:4], UpdateState.ROLLED_BACK)
    await report(engine, central.publisher, first[4:], UpdateState.DOWNLOADING)
    await run_command(engine, "rollback", rollout_id, actor=OPS, actor_role="ops",
                      reason_code="rollback", reason_text="reader errors")  # fmt: skip
    await central.rounds()
    back = central.publisher.offers()[5:]
    assert sorted(central.offered[5:]) == sorted(first[:3])
    assert {p.signed_manifest.manifest.version for p in back} == {"5.2.1"}
    record = await rollout_of(engine, rollout_id)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(firmware_actions.c.allow_downgrade_confirmed).where(
                    firmware_actions.c.artifact_id == record.rollback_artifact_id,
                    firmware_actions.c.rollout_id == rollout_id,
                )
            )
        ).scalars()
        confirmed = list(rows)
    assert confirmed == [True, True, True]
    assert record.state is RolloutState.ROLLED_BACK and record.finished_at is not None
    states = {
        a.terminal_id: a.state for a in await actions(engine) if a.artifact_version == "5.3.0"
    }
    assert states[first[4]] is ActionState.CANCELLED  # it was still downloading
    await central.rounds()
    assert len(central.publisher.sent) == 8  # nothing offered twice


async def test_waves_left_empty_by_a_small_fleet_pass_without_a_gate(engine: AsyncEngine) -> None:
    await add_fleet(engine, 1)
    soak = timedelta(minutes=10)
    policy = RolloutPolicy(
        waves=(WaveSpec(count=1, soak=timedelta(0)), WaveSpec(percent=50.0, soak=soak),
               WaveSpec(percent=100.0, soak=soak)),
        offers_per_minute=6000, jitter_s=0,
    )  # fmt: skip
    rollout_id = await start(engine, policy)
    central = Central(engine)
    await central.rounds()
    await report(engine, central.publisher, central.offered)
    await central.rounds()
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.FINISHED
    assert [w.gate_detail.get("skipped") for w in record.waves] == [
        "no soak time: nothing to measure",
        "no terminals in this wave",
        "no terminals in this wave",
    ]


class AbortingPublisher(MemoryPublisher):
    """Staff abort the rollout while its second offer is being published."""

    def __init__(self, engine: AsyncEngine, rollout_id: int) -> None:
        super().__init__()
        self.engine, self.rollout_id = engine, rollout_id

    async def publish(self, terminal_id: str, channel: Channel, payload: BaseModel,
                      *, timeout_s: float = 10.0) -> None:  # fmt: skip
        if len(self.sent) == 1:
            await run_command(self.engine, "abort", self.rollout_id, actor=OPS,
                              actor_role="ops", reason_code="other")  # fmt: skip
        await super().publish(terminal_id, channel, payload, timeout_s=timeout_s)


async def test_offers_made_while_staff_abort_are_cancelled(engine: AsyncEngine) -> None:
    await add_fleet(engine, 5)
    # Offers 10 s apart: the runner's clock is the real time moved on, and a round on a
    # loaded machine may take over a second, which must not make the second offer due.
    policy = RolloutPolicy(waves=(WaveSpec(percent=100.0),), offers_per_minute=6, jitter_s=0)
    rollout_id = await start(engine, policy)
    central = Central(engine)
    publisher = AbortingPublisher(engine, rollout_id)
    central.offers.publisher = publisher
    await central.runner.tick()  # the wave starts: its first offer is due at once
    assert len(publisher.sent) == 1
    central.clock.shift(seconds=45)  # the other four are due: one push, aborted meanwhile
    await central.runner.tick()
    assert len(publisher.sent) == 5
    made = await actions(engine)
    assert len(made) == 5 and {a.state for a in made} == {ActionState.CANCELLED}
    assert (await rollout_of(engine, rollout_id)).state is RolloutState.ABORTED
