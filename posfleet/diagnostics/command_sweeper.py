"""The background round that brings every staff command to a final state.

Each round (a few small statements):

1. a ``queued`` command past its ``expires_at`` ends ``expired``: its terminal never came
   online to take it (if it comes back later, its agent answers ``expired`` too);
   a ``sent`` one gets :data:`RUNNING_GRACE` more, since it may be running right now;
2. a queued command the broker holds for a terminal that is back online counts as
   ``sent`` (the broker delivers it from the terminal's session at reconnect);
3. a queued command the broker never took (it was away) is published again.
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
from posfleet.diagnostics.remote_commands import publish_command
from posfleet.firmware.background_loop import BackgroundLoop
from posfleet.store.engine import write_transaction
from posfleet.store.terminal_commands import (
    expire_overdue,
    mark_reconnected_sent,
    unpublished,
)

log = logging.getLogger(__name__)

SWEEP_INTERVAL = timedelta(seconds=2)
RUNNING_GRACE = timedelta(seconds=60)
"""How long after its expiry a command the terminal took may still answer."""
REPUBLISH_LIMIT = 50


@dataclass(slots=True)
class SweepStats:
    """What the sweeper did since it started."""

    rounds: int = 0
    expired: int = 0
    republished: int = 0


class CommandSweeper(BackgroundLoop):
    """Runs :meth:`sweep` every ``interval`` while the ``async with`` block lasts."""

    task_name: ClassVar[str] = "command-sweeper"

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher | None,
        *,
        interval: timedelta = SWEEP_INTERVAL,
        running_grace: timedelta = RUNNING_GRACE,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.publisher = publisher
        self.interval = interval
        self.running_grace = running_grace
        self.stats = SweepStats()
        self._clock = clock

    async def sweep(self) -> None:
        """One round: expire, promote reconnected, republish."""
        now = self._clock()
        async with write_transaction(self.engine) as conn:
            expired = await expire_overdue(
                conn, queued_before=now, sent_before=now - self.running_grace, now=now
            )
            await mark_reconnected_sent(conn)
            retry = await unpublished(conn, now=now, limit=REPUBLISH_LIMIT)
        for record in expired:
            log.info("command %s to %s expired unanswered", record.id, record.terminal_id)
        self.stats.expired += len(expired)
        if self.publisher is not None:
            for record in retry:
                published = await publish_command(self.engine, self.publisher, record)
                if published.published_at is None:
                    break  # the broker is still away: the others would wait in vain
                self.stats.republished += 1
        self.stats.rounds += 1

    async def _run(self) -> None:
        while not self.stopping:
            try:
                await self.sweep()
            except Exception:
                # A database hiccup costs one round, never the loop.
                log.exception("command sweep failed")
            await self._nap(self.interval.total_seconds())
