"""Hourly health rollups: what the dashboard charts once raw samples have been pruned.

One row per (terminal, UTC hour of the report's own timestamp). Each ingest batch's new
samples (and only those: redelivered duplicates are never inserted) are aggregated by
the database itself with one ``INSERT ... SELECT ... GROUP BY ... ON CONFLICT`` that adds
counts and sums and keeps minima and maxima, so a rollup is exact however the reports
were batched, and no per-report Python runs for it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import health_rollups, health_samples
from posfleet.store.upsert import insert_for

_MIN_COLUMNS = ("battery_min", "rssi_min")
_MAX_COLUMNS = ("temperature_max", "reader_reads_max", "reader_errors_max", "declined_max")
_SUM_COLUMNS = (
    "samples",
    "temperature_sum",
    "temperature_count",
    "host_unreachable",
    "printer_faults",
    "tamper",
)
_PRINTER_WORKING = ("ok", "paper_low")


class HealthRollup(pydantic.BaseModel):
    """One terminal's health over one hour."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    hour: datetime
    samples: int
    temperature_avg: float | None
    temperature_max: float | None
    battery_min: float | None
    rssi_min: int | None
    host_unreachable: int
    printer_faults: int
    tamper: int
    reader_reads_max: int | None
    reader_errors_max: int | None
    declined_max: int | None


def _hour(ts: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[Any]:
    """The start of the UTC hour of ``ts``, in the column's own storage format."""
    if dialect == "postgresql":
        return sa.func.date_trunc("hour", ts, "UTC")
    # SQLite keeps UtcDateTime as 'YYYY-MM-DD HH:MM:SS.ffffff' text in UTC.
    return sa.func.strftime("%Y-%m-%d %H:00:00.000000", ts)


def _count_if(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((condition, 1), else_=0))


def _batch_aggregate(batch_id: int, dialect: str) -> sa.Select[Any]:
    s = health_samples.c
    m = s.metrics
    temperature = m["temperature_c"].as_float()

    def reader_sum(counter: str) -> sa.ColumnElement[Any]:
        parts = [m[("card_reader", name, counter)].as_integer() for name in _READERS]
        total: sa.ColumnElement[Any] = parts[0] + parts[1] + parts[2]
        return total

    hour = _hour(s.ts, dialect)
    return (
        sa.select(
            s.terminal_id,
            hour,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(temperature), 0.0),
            sa.func.count(temperature),
            sa.func.max(temperature),
            sa.func.min(m[("battery", "percent")].as_float()),
            sa.func.min(m[("network", "rssi_dbm")].as_integer()),
            _count_if(m[("network", "host_reachable")].as_boolean() == sa.false()),
            _count_if(m[("printer", "status")].as_string().not_in(_PRINTER_WORKING)),
            _count_if(m["tamper"].as_boolean() == sa.true()),
            sa.func.max(reader_sum("reads")),
            sa.func.max(reader_sum("errors")),
            sa.func.max(m[("transactions", "declined")].as_integer()),
        )
        .where(s.batch_id == batch_id)
        .group_by(s.terminal_id, hour)
    )


_READERS = ("chip", "magstripe", "contactless")
_COLUMNS = (  # in the order _batch_aggregate selects them
    "terminal_id",
    "hour",
    "samples",
    "temperature_sum",
    "temperature_count",
    "temperature_max",
    "battery_min",
    "rssi_min",
    "host_unreachable",
    "printer_faults",
    "tamper",
    "reader_reads_max",
    "reader_errors_max",
    "declined_max",
)


def _extreme(current: Any, new: Any, keep_larger: bool) -> Any:
    """SQL for the larger (or smaller) of two nullable values, on SQLite and PostgreSQL."""
    better = new > current if keep_larger else new < current
    return sa.case(
        (current.is_(None), new),
        (new.is_(None), current),
        (better, new),
        else_=current,
    )


async def merge_batch_rollups(conn: AsyncConnection, batch_id: int) -> None:
    """Add the samples stored under ``batch_id`` to the hourly rollups."""
    stmt = insert_for(conn, health_rollups).from_select(
        list(_COLUMNS), _batch_aggregate(batch_id, conn.dialect.name)
    )
    new, old = stmt.excluded, health_rollups.c
    set_: dict[str, Any] = {name: old[name] + new[name] for name in _SUM_COLUMNS}
    set_.update({name: _extreme(old[name], new[name], False) for name in _MIN_COLUMNS})
    set_.update({name: _extreme(old[name], new[name], True) for name in _MAX_COLUMNS})
    stmt = stmt.on_conflict_do_update(index_elements=["terminal_id", "hour"], set_=set_)
    await conn.execute(stmt)


async def list_rollups(
    conn: AsyncConnection, terminal_id: str, *, since: datetime, until: datetime | None = None
) -> list[HealthRollup]:
    """A terminal's hourly rollups from ``since`` (inclusive), oldest first."""
    c = health_rollups.c
    query = sa.select(health_rollups).where(c.terminal_id == terminal_id, c.hour >= since)
    if until is not None:
        query = query.where(c.hour < until)
    rows = (await conn.execute(query.order_by(c.hour))).all()
    result = []
    for row in rows:
        data = dict(row._mapping)
        count = data.pop("temperature_count")
        total = data.pop("temperature_sum")
        data["temperature_avg"] = total / count if count else None
        result.append(HealthRollup.model_validate(data))
    return result
