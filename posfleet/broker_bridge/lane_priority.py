"""The fast lane first on the service's event loop.

Both ingest lanes share one event loop with the hook (the rule engine, the incident
recorder) and the dashboard. Under a health backlog the loop is never idle: every turn
holds a slice of the bulk lane's validation or a slice of its hook, so a fault event
whose path takes a few dozen turns (validation, the store's answer, the PUBACK, the
engine, the incident's transaction) waited seconds for them. The queue and the writer
already put the fast lane first; this puts it first on the loop too.

The fast lane *begins* when it takes a batch and *ends* once that batch's hook returned;
meanwhile the bulk lane's work waits at its yields (:meth:`LanePriority.turn`), for at
most :data:`HOLD_S` at a time. Faults come in ones and twos and a fast batch is done
within that, so for them the bulk lane simply waits. A burst that keeps the fast lane
busy (a shop's terminals all rebooting after an update) slows the bulk lane to a slice
per hold instead of stopping it: health keeps coming in, and a rollout's health gate
still sees the updated terminals report.
"""

from __future__ import annotations

import asyncio
import contextlib

HOLD_S = 0.25
"""The longest the bulk lane waits at one yield for the fast lane."""


class LanePriority:
    """Counts the fast lane's batches in hand; bulk work waits while there are any."""

    def __init__(self) -> None:
        self._in_hand = 0
        self._clear = asyncio.Event()
        self._clear.set()

    @property
    def urgent(self) -> bool:
        """True while the fast lane has a batch in hand."""
        return self._in_hand > 0

    def begin(self) -> None:
        """The fast lane took a batch."""
        self._in_hand += 1
        self._clear.clear()

    def end(self) -> None:
        """A fast-lane batch is done (its hook returned, or it was given up)."""
        self._in_hand = max(0, self._in_hand - 1)
        if not self._in_hand:
            self._clear.set()

    async def turn(self) -> None:
        """Where bulk work yields: one turn of the loop, then until no fast batch is in
        hand, or :data:`HOLD_S` passed."""
        await asyncio.sleep(0)
        if self._clear.is_set():
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HOLD_S):
                await self._clear.wait()
