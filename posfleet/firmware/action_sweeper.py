"""The central service's firmware chores: deadlines, offers not yet out, re-offers.

One task, woken at the next Action's deadline (at least every ``interval``), when a push
creates Actions, and by the ingest's stored-messages hook:

- an online ``state`` from a terminal with an open Action re-publishes its offer with a
  new token, so a terminal that was away (or lost its session) gets it on reconnect;
- an ``fw/status`` may have put its Action up for a retry, so due offers go out at once;
- every round times out overdue Actions and publishes offers still due (after a broker
  outage, or from a push made with the CLI while the broker was away), and tells the
  terminals of cancelled Actions not told yet (:mod:`~posfleet.firmware.cancel_notices`:
  a rollout's abort, a cancel from the shell, a broker that was away).

Idempotent, like the housekeeping: with several central instances each does the same,
and the store's conditional updates keep one outcome per Action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta

from posfleet.contract import Message, State, UpdateStatus, utcnow
from posfleet.firmware.action_records import next_deadline
from posfleet.firmware.background_loop import BackgroundLoop
from posfleet.firmware.offers import FirmwareOffers

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = timedelta(seconds=30)
MIN_NAP_S = 0.05


class ActionSweeper(BackgroundLoop):
    """Runs the firmware chores until the block ends; an async context manager."""

    task_name = "firmware-action-sweeper"

    def __init__(self, offers: FirmwareOffers, *, interval: timedelta = DEFAULT_INTERVAL) -> None:
        self.offers = offers
        self.interval = interval
        self.rounds = 0
        self.failures = 0
        self._wake = asyncio.Event()
        self._reconnected: set[str] = set()

    async def on_stored(self, messages: Sequence[Message]) -> None:
        """The ingest hook: note reconnected terminals and statuses, then wake the task.

        Cheap on purpose (it runs on the ingest's path): the work is the task's.
        """
        wake = False
        for message in messages:
            payload = message.payload
            if isinstance(payload, State) and payload.online:
                self._reconnected.add(message.topic.terminal_id)
                wake = True
            elif isinstance(payload, UpdateStatus):
                wake = True
        if wake:
            self._wake.set()

    def wake(self) -> None:
        """Run a round now (new Actions, a test that wants the deadline checked)."""
        self._wake.set()

    async def sweep(self) -> None:
        """One round: time out, re-offer to reconnected terminals, publish due offers."""
        await self.offers.expire_overdue()
        if self._reconnected:
            terminals, self._reconnected = sorted(self._reconnected), set()
            try:
                await self.offers.reoffer(terminals)
            except Exception:
                self._reconnected.update(terminals)  # offered next round instead
                raise
        await self.offers.publish_due()
        await self.offers.notices.tell_pending()
        self.rounds += 1

    async def _run(self) -> None:
        while not self.stopping:
            self._wake.clear()
            self.offers.changed.clear()
            try:
                await self.sweep()
                nap = await self._until_next_deadline()
            # The database or the broker briefly away: try again next round.
            except Exception as exc:
                self.failures += 1
                log.warning("firmware action sweep failed: %s", exc)
                nap = self.interval.total_seconds()
            await self._sleep(nap)

    async def _until_next_deadline(self) -> float:
        async with self.offers.engine.connect() as conn:
            deadline = await next_deadline(conn)
        nap = self.interval.total_seconds()
        if deadline is not None:
            nap = min(nap, (deadline - utcnow()).total_seconds())
        return max(nap, MIN_NAP_S)

    async def _sleep(self, seconds: float) -> None:
        await self._nap(seconds, self._wake, self.offers.changed)
