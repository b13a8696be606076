"""Scheduled configuration backups: every online terminal about once per period.

Each round asks at most ``budget`` terminals for a backup: the online ones whose newest
backup is older than the period (those never backed up first, then the longest ago)
and that have none on the way. The budget spreads a fleet over the rounds instead of
asking every terminal at once, and a terminal backed up late keeps its later place in
the next period, so the load stays spread. Offline terminals wait until they are back.
Several central instances may run it: a terminal with a backup command pending is
skipped, so at worst two instances ask the same terminal once each in one round.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.contract import utcnow
from posfleet.diagnostics.config_backups import SCHEDULE_ACTOR, take_backup
from posfleet.diagnostics.errors import DiagnosticsError
from posfleet.firmware.background_loop import BackgroundLoop
from posfleet.store.config_backups import due_for_backup

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BackupSchedule:
    """How often each terminal is backed up, and how many are asked per round."""

    period: timedelta = timedelta(days=1)
    interval: timedelta = timedelta(minutes=5)
    """Time between rounds."""
    budget: int = 50
    """At most this many terminals per round (the fleet's backups per day are about
    ``budget * period / interval``: keep that above the fleet's size)."""

    def __post_init__(self) -> None:
        if self.period <= timedelta(0) or self.interval <= timedelta(0):
            raise ValueError("the backup period and round interval must be positive")
        if self.budget < 1:
            raise ValueError("the backup budget per round must be at least 1")

    def taken_before(self, now: datetime) -> datetime:
        """A terminal whose newest backup is older than this is due."""
        return now - self.period


@dataclass(slots=True)
class ScheduleStats:
    """What the scheduled backups did since they started."""

    rounds: int = 0
    asked: int = 0


class ScheduledBackups(BackgroundLoop):
    """Runs :meth:`round` every ``schedule.interval`` while the ``async with`` block lasts."""

    task_name: ClassVar[str] = "scheduled-backups"

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher | None,
        schedule: BackupSchedule = BackupSchedule(),
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.schedule = schedule
        self.stats = ScheduleStats()
        self._clock = clock

    async def round(self) -> list[str]:
        """Ask the terminals due now for a backup; their ids."""
        now = self._clock()
        async with self.engine.connect() as conn:
            due = await due_for_backup(
                conn, taken_before=self.schedule.taken_before(now), limit=self.schedule.budget
            )
        asked = []
        for terminal_id in due:
            try:
                await take_backup(
                    self.engine,
                    self.publisher,
                    terminal_id,
                    issued_by=SCHEDULE_ACTOR,
                    reason="scheduled configuration backup",
                )
            except DiagnosticsError as exc:
                log.warning("scheduled backup of %s not asked: %s", terminal_id, exc)
                continue
            asked.append(terminal_id)
        self.stats.rounds += 1
        self.stats.asked += len(asked)
        return asked

    async def _run(self) -> None:
        while not self.stopping:
            # The first round waits one interval too: a central service that restarts
            # does not ask its whole budget of terminals at once while it starts up.
            await self._nap(self.schedule.interval.total_seconds())
            if self.stopping:
                return
            try:
                await self.round()
            except Exception:
                # A database hiccup costs one round, never the loop.
                log.exception("scheduled backup round failed")
