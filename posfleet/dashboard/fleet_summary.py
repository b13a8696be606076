"""Fleet-wide counts for the overview page."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import terminals


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """How many terminals are online and offline right now."""

    online: int
    offline: int

    @property
    def total(self) -> int:
        """Every terminal the centre knows."""
        return self.online + self.offline


async def count_terminals(conn: AsyncConnection) -> FleetCounts:
    """Count the fleet by presence, in one grouped query."""
    rows = await conn.execute(
        sa.select(terminals.c.online, sa.func.count()).group_by(terminals.c.online)
    )
    by_presence = {bool(online): int(count) for online, count in rows}
    return FleetCounts(online=by_presence.get(True, 0), offline=by_presence.get(False, 0))
