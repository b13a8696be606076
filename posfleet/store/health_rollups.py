"""Hourly health rollups: what the dashboard charts once raw samples have been pruned.

One row per (terminal, UTC hour of the report's own timestamp), holding counts, sums,
minima and maxima so that rows merge by addition. The rows are folded from the stored
samples by :mod:`posfleet.store.sample_rollups`, which says how each report is counted
exactly once; they lag the samples by at most the fold interval (a minute by default).
"""

from __future__ import annotations

from datetime import datetime

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import health_rollups


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


_SUMS = (
    "samples",
    "temperature_sum",
    "temperature_count",
    "host_unreachable",
    "printer_faults",
    "tamper",
)
_MINIMA = ("battery_min", "rssi_min")
_MAXIMA = ("temperature_max", "reader_reads_max", "reader_errors_max", "declined_max")
ROLLUP_COLUMNS = ("terminal_id", "hour", *_SUMS, *_MINIMA, *_MAXIMA)
"""The columns of ``health_rollups``: the key, then sums, minima and maxima."""


def _extreme(column: str, keep: str) -> str:
    """SQL keeping the smaller (``<``) or larger (``>``) of a stored and a new nullable value."""
    old, new = f"health_rollups.{column}", f"excluded.{column}"
    return (
        f"{column} = CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
        f"WHEN {new} {keep} {old} THEN {new} ELSE {old} END"
    )


ROLLUP_ON_CONFLICT = " ON CONFLICT (terminal_id, hour) DO UPDATE SET " + ", ".join(
    [f"{c} = health_rollups.{c} + excluded.{c}" for c in _SUMS]
    + [_extreme(c, "<") for c in _MINIMA]
    + [_extreme(c, ">") for c in _MAXIMA]
)
"""Merging new sums into a stored row: counts and sums add, extremes keep the extreme."""


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
