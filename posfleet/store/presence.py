"""Presence from silence: terminals whose reports stopped are marked offline.

The broker's LWT covers a dropped connection; it cannot cover an agent that stays
connected but no longer reports (a hung serial link, a stuck process). Every health
report moves the terminal's ``heartbeat_due_at`` to twice its interval ahead; a periodic
sweep marks the overdue ones offline, and their next report brings them back.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.report_batch import OFFLINE_BY_SILENCE
from posfleet.store.schema import terminals


async def mark_silent_terminals_offline(conn: AsyncConnection, *, now: datetime) -> list[str]:
    """Mark online terminals whose heartbeat is overdue as offline; return their ids."""
    t = terminals.c
    stmt = (
        sa.update(terminals)
        .where(t.online == sa.true(), t.heartbeat_due_at < now)
        .values(online=False, offline_reason=OFFLINE_BY_SILENCE, state_changed_at=now)
        .returning(t.terminal_id)
    )
    return sorted(row.terminal_id for row in (await conn.execute(stmt)).all())
