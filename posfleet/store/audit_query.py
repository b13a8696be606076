"""Reading the audit log: filtered by who, what, which object and when, newest first, paged.

Paging is by keyset on the entry id (``before``: the last id of the previous page), so a
deep page costs what the first does and entries written meanwhile never shift a page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.accounts import AUDIT_COLUMNS, AuditEntry
from posfleet.store.schema import audit_log


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries to show; every criterion given must hold.

    ``actor`` and ``target`` match exactly (``user:alice``, ``T-0001``); ``action`` matches
    exactly or, ending in ``.``, as a prefix (``rollout.`` for every rollout action).
    """

    actor: str | None = None
    action: str | None = None
    target: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class AuditPage:
    """One page of entries and the ``before`` of the next (None on the last page)."""

    entries: list[AuditEntry]
    next_before: int | None


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _conditions(found: AuditFilter) -> list[sa.ColumnElement[bool]]:
    a = audit_log.c
    conditions: list[sa.ColumnElement[bool]] = []
    if found.actor:
        conditions.append(a.actor == found.actor)
    if found.action:
        if found.action.endswith("."):
            conditions.append(a.action.like(_escape_like(found.action) + "%", escape="\\"))
        else:
            conditions.append(a.action == found.action)
    if found.target:
        conditions.append(a.target == found.target)
    if found.since is not None:
        conditions.append(a.ts >= found.since)
    if found.until is not None:
        conditions.append(a.ts < found.until)
    return conditions


async def query_audit(
    conn: AsyncConnection, found: AuditFilter, *, limit: int = 50, before: int | None = None
) -> AuditPage:
    """The newest ``limit`` entries matching ``found`` with ids below ``before``."""
    a = audit_log.c
    query = sa.select(*AUDIT_COLUMNS).where(*_conditions(found))
    if before is not None:
        query = query.where(a.id < before)
    rows = (await conn.execute(query.order_by(a.id.desc()).limit(limit + 1))).all()
    entries = [AuditEntry.from_row(r._mapping) for r in rows[:limit]]
    return AuditPage(entries, entries[-1].id if len(rows) > limit else None)
