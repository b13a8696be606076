"""The reports over incidents: top problems, response times, weekly trend, repeated faults.

Built on :mod:`posfleet.diagnostics.analytics`: its counts by dimension, its daily
buckets and its time arithmetic (spelled for SQLite and PostgreSQL there). Every query
reads the terminal incidents opened in the period through the ``opened_at`` index and
aggregates in the database; what comes back is bounded (top N, one row per day, a limit).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.diagnostics.analytics import (
    Bucket,
    Dimension,
    count_by,
    opened_between,
    over_time,
    seconds_between,
)
from posfleet.reports.models import (
    RepeatedFaultRow,
    RepeatedFaultsReport,
    ResponseTimeRow,
    ResponseTimesReport,
    TopProblemRow,
    TopProblemsReport,
    WeeklyTrendReport,
    WeekRow,
)
from posfleet.reports.period import ReportPeriod
from posfleet.store.schema import incidents

TOP_DIMENSIONS = (
    Dimension.RULE,
    Dimension.MODEL,
    Dimension.FIRMWARE,
    Dimension.MERCHANT,
    Dimension.SITE,
)
"""What the top-problems report ranks, in the order it shows them."""

MAX_ASSIGNEES = 100
"""The response-times report lists at most this many assignees (most incidents first)."""

DEFAULT_MIN_REPEATS = 3
"""Incidents of one component in the period that make a terminal a swap candidate."""


async def top_problems(
    conn: AsyncConnection, period: ReportPeriod, *, top: int, now: datetime
) -> TopProblemsReport:
    """The ``top`` most frequent rules, models, firmware versions, merchants and sites."""
    total = (
        await conn.execute(
            sa.select(sa.func.count()).where(*opened_between(period.since, period.until))
        )
    ).scalar()
    rows = [
        TopProblemRow(dimension=dimension.value, key=found.key, incidents=found.count)
        for dimension in TOP_DIMENSIONS
        for found in await count_by(
            conn, dimension, since=period.since, until=period.until, limit=top
        )
    ]
    return TopProblemsReport(
        since=period.since,
        until=period.until,
        generated_at=now,
        top=top,
        total=int(total or 0),
        rows=rows,
    )


def _times_columns(conn: AsyncConnection) -> list[sa.ColumnElement[Any]]:
    i = incidents.c
    return [
        sa.func.count().label("n"),
        sa.func.count(i.acknowledged_at).label("acked"),
        sa.func.count(i.resolved_at).label("resolved"),
        # avg() skips the NULLs of incidents never acknowledged (or resolved).
        sa.func.avg(seconds_between(conn, i.opened_at, i.acknowledged_at)).label("mtta"),
        sa.func.avg(seconds_between(conn, i.opened_at, i.resolved_at)).label("mttr"),
    ]


def _times_row(group: str, key: str | None, row: sa.Row[Any]) -> ResponseTimeRow:
    return ResponseTimeRow(
        group=group,
        key=key,
        incidents=int(row.n),
        acknowledged=int(row.acked),
        resolved=int(row.resolved),
        mtta_s=None if row.mtta is None else round(float(row.mtta), 1),
        mttr_s=None if row.mttr is None else round(float(row.mttr), 1),
    )


async def response_times(
    conn: AsyncConnection, period: ReportPeriod, *, now: datetime
) -> ResponseTimesReport:
    """MTTA and MTTR over the incidents opened in the period: all, per severity, per assignee."""
    window = opened_between(period.since, period.until)
    overall = (await conn.execute(sa.select(*_times_columns(conn)).where(*window))).one()
    rows = [_times_row("all", None, overall)]
    severity = incidents.c.severity
    per_severity = (
        sa.select(severity.label("key"), *_times_columns(conn))
        .where(*window)
        .group_by(severity)
        .order_by(severity)
    )
    rows += [_times_row("severity", r.key, r) for r in await conn.execute(per_severity)]
    assignee = incidents.c.assignee
    n = sa.func.count()
    per_assignee = (
        sa.select(assignee.label("key"), *_times_columns(conn))
        .where(*window)
        .group_by(assignee)
        .order_by(n.desc(), assignee.asc().nulls_last())
        .limit(MAX_ASSIGNEES)
    )
    rows += [_times_row("assignee", r.key, r) for r in await conn.execute(per_assignee)]
    return ResponseTimesReport(since=period.since, until=period.until, generated_at=now, rows=rows)


def week_of(day: date) -> date:
    """The Monday that starts ``day``'s ISO week."""
    return day - timedelta(days=day.weekday())


async def weekly_trend(
    conn: AsyncConnection, period: ReportPeriod, *, now: datetime
) -> WeeklyTrendReport:
    """Incidents opened per ISO week, from the database's daily counts (at most 367 rows)."""
    days = await over_time(conn, Bucket.DAY, since=period.since, until=period.until)
    per_week: dict[date, int] = {}
    for bucket in days:
        week = week_of(date.fromisoformat(bucket.start[:10]))
        per_week[week] = per_week.get(week, 0) + bucket.count
    first = week_of(period.since.date())
    last = week_of((period.until - timedelta(microseconds=1)).date())
    rows = []
    week = first
    while week <= last:
        rows.append(WeekRow(week_start=week, incidents=per_week.get(week, 0)))
        week += timedelta(days=7)
    return WeeklyTrendReport(since=period.since, until=period.until, generated_at=now, rows=rows)


async def repeated_faults(
    conn: AsyncConnection,
    period: ReportPeriod,
    *,
    min_incidents: int = DEFAULT_MIN_REPEATS,
    limit: int = 100,
    now: datetime,
) -> RepeatedFaultsReport:
    """Terminals with ``min_incidents`` or more incidents of one component, most first."""
    i = incidents.c
    n = sa.func.count().label("n")
    query = (
        sa.select(
            i.terminal_id,
            i.component,
            n,
            sa.func.count(sa.distinct(i.rule_id)).label("rules"),
            sa.func.min(i.opened_at).label("first"),
            sa.func.max(i.opened_at).label("last"),
            # What the terminal was at its latest incident is as good as any: max().
            sa.func.max(i.model).label("model"),
            sa.func.max(i.merchant_id).label("merchant_id"),
            sa.func.max(i.site_id).label("site_id"),
        )
        .where(*opened_between(period.since, period.until), i.terminal_id.is_not(None))
        .group_by(i.terminal_id, i.component)
        .having(sa.func.count() >= min_incidents)
        .order_by(n.desc(), i.terminal_id, i.component)
        .limit(limit)
    )
    rows = [
        RepeatedFaultRow(
            terminal_id=r.terminal_id,
            component=r.component,
            incidents=int(r.n),
            rules=int(r.rules),
            first_opened_at=r.first,
            last_opened_at=r.last,
            model=r.model,
            merchant_id=r.merchant_id,
            site_id=r.site_id,
        )
        for r in await conn.execute(query)
    ]
    return RepeatedFaultsReport(
        since=period.since,
        until=period.until,
        generated_at=now,
        min_incidents=min_incidents,
        limit=limit,
        rows=rows,
    )
