"""The fast lane first on the service's event loop.

Both ingest lanes share one event loop with the hook (the rule engine, the incident
recorder) and the dashboard. Under a health backlog the loop is never idle: every turn
holds a slice of the bulk lane's validation or a slice of its hook, so a fault event
whose path takes a few dozen turns (validation, the store's answer, the PUBACK, the
engine, the incident's transaction) waited seconds for them. The queue and the writer
already put the fast lane first; this puts it first on the loop too.

The fast lane *begins* when it takes a batch and *ends* once that batch's hook returned;
meanwhile the bulk lane's work waits at its yields (:meth:`LanePriority.turn`). Faults
come in ones and twos, so the bulk lane loses little; an event storm that kept the fast
lane busy without a pause would hold health back, which then waits in the broker's
persistent session, not lost.
"""

from __future__ import annotations

import asyncio


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
        hand."""
        await asyncio.sleep(0)
        await self._clear.wait()
