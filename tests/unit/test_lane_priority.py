"""The fast lane first on the event loop: bulk work waits at its yields meanwhile."""

from __future__ import annotations

import asyncio

from posfleet.broker_bridge.lane_priority import HOLD_S, LanePriority


async def test_bulk_work_goes_on_at_once_while_the_fast_lane_has_nothing() -> None:
    priority = LanePriority()
    async with asyncio.timeout(1):
        await priority.turn()
    assert not priority.urgent


async def test_bulk_work_waits_until_every_fast_batch_in_hand_is_done() -> None:
    priority = LanePriority()
    priority.begin()
    priority.begin()  # two fast batches in flight
    bulk = asyncio.create_task(priority.turn())
    done, _ = await asyncio.wait({bulk}, timeout=0.05)
    assert not done and priority.urgent
    priority.end()
    done, _ = await asyncio.wait({bulk}, timeout=0.05)
    assert not done, "one fast batch is still in hand"
    priority.end()
    async with asyncio.timeout(1):
        await bulk
    assert not priority.urgent


async def test_an_extra_end_does_not_leave_the_bulk_lane_waiting_later() -> None:
    priority = LanePriority()
    priority.end()
    priority.begin()
    priority.end()
    async with asyncio.timeout(1):
        await priority.turn()


async def test_a_fast_lane_that_stays_busy_slows_the_bulk_lane_but_does_not_stop_it() -> None:
    priority = LanePriority()
    priority.begin()  # and never ends: a burst of state messages
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(HOLD_S * 20):
        for _ in range(3):
            await priority.turn()
    # Each turn held the bulk lane back for its while, then let it go on.
    assert loop.time() - started >= 3 * HOLD_S * 0.9
    assert priority.urgent
