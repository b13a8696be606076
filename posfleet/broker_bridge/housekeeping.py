"""Periodic upkeep of the store: the heartbeat sweep, rollup folding and telemetry pruning.

Both are idempotent, so every central instance may run them; with N instances the work
is simply done N times as often.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.async_tasks import cancel_and_wait, run_every
from posfleet.broker_bridge.ingest_batch import is_transient
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S
from posfleet.contract import utcnow
from posfleet.store.engine import write_transaction
from posfleet.store.presence import mark_silent_terminals_offline
from posfleet.store.retention import (
    DEFAULT_RAW_RETENTION,
    DEFAULT_ROLLUP_RETENTION,
    prune_telemetry,
)
from posfleet.store.sample_rollups import fold_samples

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class HousekeepingSchedule:
    """How often each chore runs, and the telemetry retention windows."""

    sweep_interval: timedelta = timedelta(seconds=30)
    prune_interval: timedelta = timedelta(hours=1)
    fold_interval: timedelta = timedelta(seconds=DEFAULT_FOLD_INTERVAL_S)
    """The store writer folds between batches; this catches up when no batches come."""
    raw_retention: timedelta = DEFAULT_RAW_RETENTION
    rollup_retention: timedelta = DEFAULT_ROLLUP_RETENTION


@dataclass(slots=True)
class HousekeepingStats:
    """What the chores did so far."""

    marked_offline: int = 0
    samples_folded: int = 0
    samples_pruned: int = 0
    rollups_pruned: int = 0
    failures: int = 0


class Housekeeping:
    """Runs the chores on their schedules until the block ends; an async context manager."""

    def __init__(self, engine: AsyncEngine, schedule: HousekeepingSchedule) -> None:
        self.schedule = schedule
        self.stats = HousekeepingStats()
        self._engine = engine
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(
                self._every(self.schedule.sweep_interval, self.sweep), name="heartbeat-sweep"
            ),
            asyncio.create_task(
                self._every(self.schedule.fold_interval, self.fold), name="rollup-fold"
            ),
            asyncio.create_task(
                self._every(self.schedule.prune_interval, self.prune), name="telemetry-prune"
            ),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(*self._tasks)

    async def sweep(self) -> list[str]:
        """Mark terminals whose heartbeat is overdue offline now; return their ids."""
        async with write_transaction(self._engine) as conn:
            silent = await mark_silent_terminals_offline(conn, now=utcnow())
        if silent:
            log.info("%d terminal(s) stopped reporting: %s", len(silent), ", ".join(silent[:20]))
        self.stats.marked_offline += len(silent)
        return silent

    async def fold(self) -> int:
        """Fold the samples stored since the last fold into the hourly rollups now."""
        folded = await fold_samples(self._engine)
        self.stats.samples_folded += folded
        return folded

    async def prune(self) -> None:
        """Delete telemetry past its retention window now."""
        result = await prune_telemetry(
            self._engine,
            now=utcnow(),
            raw_retention=self.schedule.raw_retention,
            rollup_retention=self.schedule.rollup_retention,
        )
        self.stats.samples_pruned += result.samples
        self.stats.rollups_pruned += result.rollups

    async def _every(self, interval: timedelta, chore: Callable[[], Awaitable[object]]) -> None:
        def failed(exc: Exception) -> None:
            # A chore that fails (database briefly away) is tried again next round.
            self.stats.failures += 1
            level = logging.WARNING if is_transient(exc) else logging.ERROR
            log.log(level, "%s failed: %s", getattr(chore, "__name__", chore), exc)

        seconds = interval.total_seconds()
        # A random start keeps several instances from running the same chore in step.
        await run_every(seconds, chore, on_error=failed, first_delay_s=random.uniform(0, seconds))
