"""The ingest's handler for ``fw/status``: each status onto its Action, in the batch's
transaction.

Given to the ingest as ``handlers={Channel.FW_STATUS: UpdateStatusHandler()}`` by the
central service. It is a small frozen dataclass, so the store writer process receives
it by pickle like any other handler. A status for no Action, or for another terminal's
Action, is returned as a dead-letter reason: stored for inspection, counted, and never
applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import UpdateStatus
from posfleet.firmware.action_states import RetryPolicy
from posfleet.firmware.actions import record_status


@dataclass(frozen=True, slots=True)
class UpdateStatusHandler:
    """Stores one ``fw/status``; False for a redelivered copy, a text for a dead letter."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: object, /, *, now: datetime
    ) -> bool | str:
        """Apply ``payload`` (an :class:`UpdateStatus`) from ``terminal_id``."""
        if not isinstance(payload, UpdateStatus):
            return f"fw/status: expected an UpdateStatus, got {type(payload).__name__}"
        outcome = await record_status(conn, terminal_id, payload, now=now, policy=self.policy)
        if outcome.refused is not None:
            return outcome.refused
        return outcome.stored
