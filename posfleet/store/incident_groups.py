"""Queries of fleet correlation: which unresolved incidents of a rule could be grouped,
which fleet incidents their terminals belong to, and what a fleet incident's share.

Grouping is decided in :mod:`posfleet.diagnostics.fleet_correlation` and the lifecycle
in :mod:`posfleet.diagnostics.incident_lifecycle`; these only read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.incidents import IncidentKind, IncidentState
from posfleet.store.schema import incidents

_UNRESOLVED = (IncidentState.OPEN.value, IncidentState.ACKNOWLEDGED.value)


async def count_unresolved_children(conn: AsyncConnection, parent_id: int) -> int:
    """How many children of a fleet incident are still open or acknowledged."""
    query = sa.select(sa.func.count()).where(
        incidents.c.parent_id == parent_id, incidents.c.state.in_(_UNRESOLVED)
    )
    return int((await conn.execute(query)).scalar_one())


@dataclass(frozen=True, slots=True)
class GroupCandidate:
    """An unresolved terminal incident as fleet correlation sees it: where it happens."""

    incident_id: int
    terminal_id: str
    site_id: str | None
    merchant_id: str | None
    firmware_version: str | None


async def list_group_candidates(
    conn: AsyncConnection, rule_id: str, *, seen_since: datetime
) -> list[GroupCandidate]:
    """The unresolved terminal incidents of ``rule_id`` seen since ``seen_since``."""
    i = incidents.c
    query = sa.select(i.id, i.terminal_id, i.site_id, i.merchant_id, i.firmware_version).where(
        i.rule_id == rule_id,
        i.kind == IncidentKind.TERMINAL.value,
        i.state.in_(_UNRESOLVED),
        i.last_seen_at >= seen_since,
    )
    return [
        GroupCandidate(int(r.id), str(r.terminal_id), r.site_id, r.merchant_id, r.firmware_version)
        for r in (await conn.execute(query)).all()
    ]


async def other_parents(
    conn: AsyncConnection, incident_ids: Sequence[int], parent_id: int
) -> set[int]:
    """The fleet incidents other than ``parent_id`` that any of ``incident_ids`` belongs to."""
    i = incidents.c
    query = sa.select(i.parent_id).where(
        i.id.in_(list(incident_ids)), i.parent_id.is_not(None), i.parent_id != parent_id
    )
    return {int(found) for found in (await conn.execute(query)).scalars()}


async def shared_identity(conn: AsyncConnection, parent_id: int) -> dict[str, str | None]:
    """The ``site_id`` and ``merchant_id`` every child of ``parent_id`` shares; None where
    they differ. Resolved children count too: the fleet incident is about every terminal
    it grouped, as its page shows them."""
    i = incidents.c
    shared: dict[str, str | None] = {}
    for column in (i.site_id, i.merchant_id):
        query = sa.select(
            sa.func.count(),
            sa.func.count(column),
            sa.func.count(sa.distinct(column)),
            sa.func.min(column),
        ).where(i.parent_id == parent_id)
        children, known, distinct, value = (await conn.execute(query)).one()
        one = children > 0 and known == children and distinct == 1
        shared[column.name] = str(value) if one else None
    return shared
