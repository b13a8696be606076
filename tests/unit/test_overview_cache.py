"""The overview's snapshot: how often the fleet is counted, and how old a figure may be."""

from __future__ import annotations

import asyncio

from posfleet.dashboard.overview_cache import SnapshotCache


class _Counter:
    """A load that returns how many times it ran, and can be held mid-count."""

    def __init__(self) -> None:
        self.runs = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> int:
        self.runs += 1
        await self.gate.wait()
        return self.runs


async def test_a_fresh_snapshot_is_served_and_a_stale_one_while_the_recount_runs() -> None:
    now = [0.0]
    load = _Counter()
    cache = SnapshotCache(load, fresh_for=3, stale_for=30, clock=lambda: now[0])
    assert await cache.get() == 1
    now[0] = 2.0
    assert await cache.get() == 1 and load.runs == 1  # fresh: nobody counts again
    now[0] = 10.0
    load.gate.clear()
    # Stale: the old figures at once, however many ask, and one recount for all of them.
    assert [await cache.get() for _ in range(5)] == [1] * 5
    await asyncio.sleep(0)
    assert load.runs == 2
    load.gate.set()
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert await cache.get() == 2


async def test_past_the_stale_limit_requests_wait_for_one_shared_count() -> None:
    now = [0.0]
    load = _Counter()
    cache = SnapshotCache(load, fresh_for=3, stale_for=30, clock=lambda: now[0])
    await cache.get()
    now[0] = 100.0
    assert list(await asyncio.gather(cache.get(), cache.get(), cache.get())) == [2, 2, 2]
    assert load.runs == 2
    await cache.close()
