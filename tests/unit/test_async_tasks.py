"""The shared shutdown and periodic helpers: what their users rely on."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from posfleet.async_tasks import cancel_and_wait, run_every


async def test_cancel_and_wait_ends_every_task_and_logs_one_that_fails_on_its_way_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    closed: list[str] = []

    async def holds(name: str, fail: bool) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append(name)
            if fail:
                raise RuntimeError("socket already gone")

    tasks = [asyncio.create_task(holds(n, n == "b"), name=n) for n in "abc"]
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR):
        await cancel_and_wait(tasks[0], None, tasks[1], tasks[2])
    assert sorted(closed) == ["a", "b", "c"] and all(t.done() for t in tasks)
    assert "task b failed while stopping" in caplog.text and "socket already gone" in caplog.text


async def test_run_every_outlives_a_failing_step_and_skips_ticks_a_slow_step_missed() -> None:
    calls: list[float] = []
    errors: list[Exception] = []
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    async def step() -> None:
        calls.append(loop.time())
        if len(calls) == 2:
            raise OSError("database away")
        if len(calls) == 3:
            await asyncio.sleep(0.35)  # misses three 0.1 s ticks
        if len(calls) == 5:
            done.set()

    task = asyncio.create_task(run_every(0.1, step, on_error=errors.append))
    async with asyncio.timeout(10):
        await done.wait()
    await cancel_and_wait(task)
    assert [str(e) for e in errors] == ["database away"]
    # After the slow step the next one starts at once, not three in a burst.
    gaps = [b - a for a, b in itertools.pairwise(calls)]
    assert gaps[2] >= 0.35 and gaps[3] >= 0.05


def test_run_every_refuses_a_period_that_would_spin() -> None:
    with pytest.raises(ValueError, match="positive"):
        asyncio.run(run_every(0, lambda: None, on_error=lambda _exc: None))
