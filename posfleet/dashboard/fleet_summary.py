"""Fleet-wide counts and per-terminal open incidents, for the overview page."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.incidents import IncidentState
from posfleet.store.schema import incidents, terminals
from posfleet.store.terminal_filters import TerminalFilter

SEVERITY_ORDER = ("info", "warning", "error", "critical")
"""Severities from least to most urgent; an unknown severity sorts below ``info``."""

_UNRESOLVED = (IncidentState.OPEN.value, IncidentState.ACKNOWLEDGED.value)

MATCH_COUNT_LIMIT = 1000
"""Matches of a filter are counted up to this many: "more than 1000" says enough, and
counting every match of a broad search at 100,000 terminals would cost more than the page."""


@dataclass(frozen=True, slots=True)
class FleetCounts:
    """How many terminals are online and offline right now."""

    online: int
    offline: int
    capped: bool = False
    """True when counting stopped at :data:`MATCH_COUNT_LIMIT`: there are more."""

    @property
    def total(self) -> int:
        """Every terminal counted."""
        return self.online + self.offline


async def count_terminals(
    conn: AsyncConnection, where: TerminalFilter | None = None, *, online: bool | None = None
) -> FleetCounts:
    """Count the fleet by presence in one grouped query; ``where`` counts only the matches.

    With ``where`` (or ``online``) the count stops after :data:`MATCH_COUNT_LIMIT` matches.
    """
    if where is None and online is None:
        query = sa.select(terminals.c.online, sa.func.count()).group_by(terminals.c.online)
        by_presence = {bool(on): int(count) for on, count in await conn.execute(query)}
        return FleetCounts(online=by_presence.get(True, 0), offline=by_presence.get(False, 0))
    matches = sa.select(terminals.c.online)
    if where is not None:
        matches = matches.where(*where.conditions(conn.dialect.name, counting=True))
    if online is not None:
        matches = matches.where(terminals.c.online == online)
    found = matches.limit(MATCH_COUNT_LIMIT + 1).subquery()
    query = sa.select(found.c.online, sa.func.count()).group_by(found.c.online)
    by_presence = {bool(on): int(count) for on, count in await conn.execute(query)}
    on, off = by_presence.get(True, 0), by_presence.get(False, 0)
    if on + off <= MATCH_COUNT_LIMIT:
        return FleetCounts(online=on, offline=off)
    # One match too many was read to know there are more; leave it out of the figures.
    return FleetCounts(online=on - (on > 0), offline=off if on > 0 else off - 1, capped=True)


@dataclass(frozen=True, slots=True)
class OpenIncidents:
    """A terminal's unresolved incidents: how many, the most urgent, and the newest."""

    count: int
    severity: str
    """The most urgent severity among them."""
    newest_id: int
    titles: tuple[str, ...]
    """Newest first."""


def severity_rank(severity: str) -> int:
    """Where ``severity`` stands in :data:`SEVERITY_ORDER` (-1 if unknown)."""
    return SEVERITY_ORDER.index(severity) if severity in SEVERITY_ORDER else -1


async def open_incidents_by_terminal(
    conn: AsyncConnection, terminal_ids: Collection[str]
) -> dict[str, OpenIncidents]:
    """The unresolved incidents of each of ``terminal_ids`` that has any, in one query."""
    if not terminal_ids:
        return {}
    i = incidents.c
    query = (
        sa.select(i.terminal_id, i.id, i.severity, i.title)
        .where(i.terminal_id.in_(list(terminal_ids)), i.state.in_(_UNRESOLVED))
        .order_by(i.terminal_id, i.id.desc())
    )
    grouped: dict[str, list[Any]] = {}
    for row in await conn.execute(query):
        grouped.setdefault(row.terminal_id, []).append(row)
    return {
        terminal_id: OpenIncidents(
            count=len(rows),
            severity=max((row.severity for row in rows), key=severity_rank),
            newest_id=int(rows[0].id),
            titles=tuple(row.title for row in rows),
        )
        for terminal_id, rows in grouped.items()
    }
