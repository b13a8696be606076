"""Two things every long-lived part of posfleet does with asyncio tasks, written once.

- :func:`cancel_and_wait`: stop background tasks at shutdown, and wait until they have
  really ended (a task only cancelled may still hold a socket or a transaction);
- :func:`run_every`: a periodic step on a fixed schedule that outlives its own failures.

Both the agent (no central dependencies) and the centre use them, so this module needs
nothing but the standard library.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` (``None`` entries are skipped) and wait until all have ended.

    The caller is shutting down: an error a task raises on its way out is logged with the
    task's name, not raised, so one failing task cannot keep the others from being waited
    for or the caller from closing what it owns.
    """
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    results = await asyncio.gather(*live, return_exceptions=True)
    for task, result in zip(live, results, strict=True):
        if isinstance(result, Exception):
            log.error("task %s failed while stopping: %r", task.get_name(), result)


async def run_every(
    period_s: float,
    step: Callable[[], Awaitable[object] | object],
    *,
    on_error: Callable[[Exception], None],
    first_delay_s: float = 0.0,
) -> None:
    """Run ``step`` (a function or a coroutine function) every ``period_s`` s until cancelled.

    The schedule is fixed (step ``n`` starts ``first_delay_s + n * period_s`` after the
    start): a slow step delays only the next one, and ticks missed meanwhile are skipped,
    never run in a burst. A step that raises goes to ``on_error`` (log it, count it) and
    the schedule goes on: a database or a link briefly away must not end the loop.
    """
    if period_s <= 0:
        raise ValueError("period_s must be positive")
    await asyncio.sleep(first_delay_s)
    next_at = time.monotonic()
    while True:
        try:
            result = step()
            if inspect.isawaitable(result):
                await result
        # The loop's whole point is to outlive its step's failures; on_error reports them.
        except Exception as exc:
            on_error(exc)
        next_at += period_s
        delay = next_at - time.monotonic()
        if delay < 0:
            next_at, delay = time.monotonic(), 0.0
        await asyncio.sleep(delay)
