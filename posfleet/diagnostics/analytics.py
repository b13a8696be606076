"""Fault statistics for managers: incidents by rule, model, firmware, site and time; MTTA/MTTR.

Counts terminal incidents only (a fleet incident groups terminal incidents that are
counted already). Time arithmetic is done by the database, which differs between SQLite
and PostgreSQL: the two spellings are kept side by side here.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.incidents import IncidentKind, IncidentState
from posfleet.store.schema import incidents


class Dimension(StrEnum):
    """What to count incidents by."""

    RULE = "rule"
    MODEL = "model"
    FIRMWARE = "firmware"
    SITE = "site"
    MERCHANT = "merchant"
    COMPONENT = "component"
    SEVERITY = "severity"


class Bucket(StrEnum):
    """Time bucket size."""

    HOUR = "hour"
    DAY = "day"


_COLUMN = {
    Dimension.RULE: incidents.c.rule_id,
    Dimension.MODEL: incidents.c.model,
    Dimension.FIRMWARE: incidents.c.firmware_version,
    Dimension.SITE: incidents.c.site_id,
    Dimension.MERCHANT: incidents.c.merchant_id,
    Dimension.COMPONENT: incidents.c.component,
    Dimension.SEVERITY: incidents.c.severity,
}


class CountRow(pydantic.BaseModel):
    """How many incidents one value of a dimension had."""

    key: str | None
    count: int


class BucketRow(pydantic.BaseModel):
    """How many incidents opened in one time bucket."""

    start: str
    count: int


class IncidentAnalytics(pydantic.BaseModel):
    """Everything the analytics page and ``posfleet incidents stats`` show."""

    since: datetime
    until: datetime
    total: int
    unresolved: int
    top: list[CountRow]
    by: dict[str, list[CountRow]]
    buckets: list[BucketRow]
    bucket: Bucket
    mtta_s: float | None
    """Mean time from opening to acknowledgement, over acknowledged incidents."""
    mttr_s: float | None
    """Mean time from opening to resolution, over resolved incidents."""


def opened_between(since: datetime, until: datetime) -> list[sa.ColumnElement[bool]]:
    """Conditions for terminal incidents opened in ``[since, until)``."""
    return [
        incidents.c.kind == IncidentKind.TERMINAL.value,
        incidents.c.opened_at >= since,
        incidents.c.opened_at < until,
    ]


async def count_by(
    conn: AsyncConnection,
    dimension: Dimension,
    *,
    since: datetime,
    until: datetime,
    limit: int = 20,
) -> list[CountRow]:
    """The most frequent values of ``dimension``, most incidents first."""
    column = _COLUMN[dimension]
    n = sa.func.count().label("n")
    query = (
        sa.select(column.label("key"), n)
        .where(*opened_between(since, until))
        .group_by(column)
        .order_by(n.desc(), column)
        .limit(limit)
    )
    rows = (await conn.execute(query)).all()
    return [CountRow(key=row.key, count=int(row.n)) for row in rows]


def _bucket_expr(conn: AsyncConnection, bucket: Bucket) -> sa.ColumnElement[Any]:
    opened = incidents.c.opened_at
    if conn.dialect.name == "postgresql":
        return sa.func.to_char(
            sa.func.date_trunc(bucket.value, sa.func.timezone("UTC", opened)),
            'YYYY-MM-DD"T"HH24:00:00Z',
        )
    fmt = "%Y-%m-%dT%H:00:00Z" if bucket is Bucket.HOUR else "%Y-%m-%dT00:00:00Z"
    return sa.func.strftime(fmt, opened)


def seconds_between(
    conn: AsyncConnection, start: sa.ColumnElement[Any], end: sa.ColumnElement[Any]
) -> sa.ColumnElement[Any]:
    """Seconds from ``start`` to ``end`` in SQL, in the connection's dialect."""
    if conn.dialect.name == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


async def over_time(
    conn: AsyncConnection, bucket: Bucket, *, since: datetime, until: datetime
) -> list[BucketRow]:
    """Incidents opened per hour or day (UTC), oldest first; empty buckets left out."""
    expr = _bucket_expr(conn, bucket).label("start")
    query = (
        sa.select(expr, sa.func.count().label("n"))
        .where(*opened_between(since, until))
        .group_by(expr)
        .order_by(expr)
    )
    return [BucketRow(start=str(r.start), count=int(r.n)) for r in (await conn.execute(query))]


async def mean_times(
    conn: AsyncConnection, *, since: datetime, until: datetime
) -> tuple[float | None, float | None]:
    """(MTTA, MTTR) in seconds over incidents opened in the window."""
    i = incidents.c
    ack = sa.select(sa.func.avg(seconds_between(conn, i.opened_at, i.acknowledged_at))).where(
        *opened_between(since, until), i.acknowledged_at.is_not(None)
    )
    res = sa.select(sa.func.avg(seconds_between(conn, i.opened_at, i.resolved_at))).where(
        *opened_between(since, until), i.resolved_at.is_not(None)
    )
    mtta = (await conn.execute(ack)).scalar()
    mttr = (await conn.execute(res)).scalar()
    return (None if mtta is None else float(mtta), None if mttr is None else float(mttr))


async def incident_analytics(
    conn: AsyncConnection,
    *,
    since: datetime,
    until: datetime,
    bucket: Bucket = Bucket.DAY,
    top: int = 10,
) -> IncidentAnalytics:
    """The whole report for incidents opened in ``[since, until)``."""
    i = incidents.c
    total = (
        await conn.execute(sa.select(sa.func.count()).where(*opened_between(since, until)))
    ).scalar()
    unresolved = (
        await conn.execute(
            sa.select(sa.func.count()).where(
                *opened_between(since, until), i.state != IncidentState.RESOLVED.value
            )
        )
    ).scalar()
    by = {
        d.value: await count_by(conn, d, since=since, until=until)
        for d in (Dimension.RULE, Dimension.MODEL, Dimension.FIRMWARE, Dimension.SITE)
    }
    mtta, mttr = await mean_times(conn, since=since, until=until)
    return IncidentAnalytics(
        since=since,
        until=until,
        total=int(total or 0),
        unresolved=int(unresolved or 0),
        top=await count_by(conn, Dimension.RULE, since=since, until=until, limit=top),
        by=by,
        buckets=await over_time(conn, bucket, since=since, until=until),
        bucket=bucket,
        mtta_s=mtta,
        mttr_s=mttr,
    )
