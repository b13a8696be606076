"""The ``report_summaries`` rows: who claimed which period's summary, and when it was sent.

The claim is an insert under the period's primary key, so of several instances exactly
one gets it; an unsent claim older than its lease is taken over by a conditional update,
which again only one instance can win.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.reports.summary_schedule import SummaryPeriod
from posfleet.store.schema import report_summaries
from posfleet.store.upsert import insert_for


async def claim_period(
    conn: AsyncConnection,
    period: SummaryPeriod,
    *,
    instance: str,
    now: datetime,
    lease: timedelta,
) -> bool:
    """Claim ``period``'s summary for ``instance``; False when another holds or sent it."""
    r = report_summaries.c
    stmt = (
        insert_for(conn, report_summaries)
        .values(
            period_key=period.key,
            since=period.since,
            until=period.until,
            claimed_by=instance,
            claimed_at=now,
        )
        .on_conflict_do_nothing(index_elements=[r.period_key])
        .returning(r.period_key)
    )
    if (await conn.execute(stmt)).first() is not None:
        return True
    takeover = (
        sa.update(report_summaries)
        .where(
            r.period_key == period.key,
            r.sent_at.is_(None),
            r.claimed_at < now - lease,
        )
        .values(claimed_by=instance, claimed_at=now)
        .returning(r.period_key)
    )
    return (await conn.execute(takeover)).first() is not None


async def mark_sent(
    conn: AsyncConnection,
    period: SummaryPeriod,
    *,
    instance: str,
    now: datetime,
    delivered: int,
    summary: dict[str, Any],
) -> None:
    """Record that ``instance`` sent ``period``'s summary (to ``delivered`` webhooks)."""
    r = report_summaries.c
    await conn.execute(
        sa.update(report_summaries)
        .where(r.period_key == period.key, r.claimed_by == instance)
        .values(sent_at=now, delivered=delivered, summary=summary)
    )


async def sent_summaries(conn: AsyncConnection, limit: int = 20) -> list[dict[str, Any]]:
    """The newest summary rows, newest period first (for the CLI and tests)."""
    r = report_summaries.c
    rows = await conn.execute(
        sa.select(report_summaries).order_by(r.since.desc(), r.period_key).limit(limit)
    )
    return [dict(row._mapping) for row in rows]
