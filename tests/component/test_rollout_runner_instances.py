"""Two central instances on one database (PostgreSQL and SQLite), racing round for round:
a rollout completes once and no terminal is offered twice, with the lease doing its work
and with the lease made worthless (the store's unique key is the last line). And a
runner stopped mid-rollout hands over to the next instance started."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import utcnow
from posfleet.firmware.rollout_model import RolloutState
from posfleet.firmware.rollout_runner import RolloutRunner
from posfleet.store.schema import firmware_actions, rollouts
from tests.component.rollout_rows import add_fleet, quick_policy
from tests.component.test_rollout_runner import Central, offers_for, report, rollout_of, start
from tests.harness import async_wait_for


async def _race(engine: AsyncEngine, lease: timedelta) -> tuple[Central, Central, int]:
    fleet = await add_fleet(engine, 40, sites=8)
    rollout_id = await start(engine, quick_policy(10, 50, 100))
    a = Central(engine, "central-a", lease=lease)
    b = Central(engine, "central-b", lease=lease)
    answered: set[str] = set()
    for _ in range(30):
        await asyncio.gather(a.rounds(1), b.rounds(1))
        for side in (a, b):
            fresh = [t for t in side.offered if t not in answered]
            await report(engine, side.publisher, fresh)
            answered.update(fresh)
        if (await rollout_of(engine, rollout_id)).state is RolloutState.FINISHED:
            break
    offered = a.offered + b.offered
    assert sorted(offered) == fleet, "every terminal offered exactly once"
    async with engine.connect() as conn:
        per_terminal = (
            await conn.execute(
                sa.select(firmware_actions.c.terminal_id, sa.func.count())
                .where(firmware_actions.c.rollout_id == rollout_id)
                .group_by(firmware_actions.c.terminal_id)
            )
        ).all()
    assert len(per_terminal) == 40 and {n for _, n in per_terminal} == {1}
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.FINISHED
    assert [t.command for t in record.transitions].count("finish") == 1
    assert record.totals.succeeded == 40
    return a, b, rollout_id


async def test_two_instances_racing_with_the_lease_complete_the_rollout_once(
    engine: AsyncEngine,
) -> None:
    a, b, _ = await _race(engine, timedelta(seconds=60))
    # The lease kept one instance on the rollout the whole time.
    assert {len(a.offered), len(b.offered)} == {0, 40}
    assert a.runner.stats.leases_lost == b.runner.stats.leases_lost == 0


async def test_two_instances_racing_without_a_lease_still_offer_nobody_twice(
    engine: AsyncEngine,
) -> None:
    # A lease that runs out at once: both instances work on the rollout in every round,
    # and the unique (rollout, terminal, image) key refuses every second Action.
    a, b, _ = await _race(engine, timedelta(0))
    assert len(a.offered) + len(b.offered) == 40


@pytest.mark.parametrize("crash", [False, True])
async def test_a_restarted_centre_resumes_the_rollout(engine: AsyncEngine, crash: bool) -> None:
    fleet = await add_fleet(engine, 20)
    rollout_id = await start(engine, quick_policy(10, 100))
    offers, first = offers_for(engine)
    runner = RolloutRunner(engine, offers, instance_id="central-a",
                           interval=timedelta(milliseconds=50))  # fmt: skip
    if crash:
        # The process runs its rounds and dies: nothing gives its lease back.
        await async_wait_for(
            lambda: _offered_after_tick(runner, first, 2), description="the canary offered"
        )
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(rollouts.c.lease_owner)) == "central-a"
    else:
        async with runner:  # a clean stop gives the lease back
            await async_wait_for(lambda: len(first.sent) == 2, description="the canary offered")
        async with engine.connect() as conn:
            assert await conn.scalar(sa.select(rollouts.c.lease_owner)) is None
    canary = [tid for tid, _, _ in first.sent]
    await report(engine, first, canary)
    offers_b, second = offers_for(engine)
    # After a crash the next instance waits for the lease to run out (a minute).
    later = timedelta(minutes=2) if crash else timedelta(0)
    restarted = RolloutRunner(
        engine, offers_b, instance_id="central-b", interval=timedelta(milliseconds=50),
        clock=lambda: utcnow() + later,
    )  # fmt: skip
    async with restarted:
        await async_wait_for(lambda: len(second.sent) == 18, description="the rest offered")
        await report(engine, second, [tid for tid, _, _ in second.sent])
        await async_wait_for(
            lambda: _finished(engine, rollout_id), description="the rollout finished"
        )
    assert sorted(canary + [tid for tid, _, _ in second.sent]) == fleet
    assert len(first.sent) == 2


async def _offered_after_tick(runner: RolloutRunner, publisher: MemoryPublisher, n: int) -> bool:
    await runner.tick()
    return len(publisher.sent) >= n


async def _finished(engine: AsyncEngine, rollout_id: int) -> bool:
    return (await rollout_of(engine, rollout_id)).state is RolloutState.FINISHED
