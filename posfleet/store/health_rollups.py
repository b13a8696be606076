"""Hourly health rollups: what the dashboard charts once raw samples have been pruned.

One row per (terminal, UTC hour of the report's own timestamp). Each report carries its
:class:`Vitals`, the few numbers a rollup keeps, taken from the validated model when it
is reduced to a sample. Each ingest batch's new samples (and only those: redelivered
duplicates are never inserted) are summed per terminal and hour in Python and merged
with one multi-row ``INSERT ... ON CONFLICT DO UPDATE`` that adds counts and sums and
keeps minima and maxima, so a rollup is exact however the reports were batched.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple, TypeVar

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import HealthMetrics, PrinterStatus
from posfleet.store.driver_sql import DriverSql, chunks
from posfleet.store.schema import health_rollups

if TYPE_CHECKING:
    from posfleet.store.report_batch import Sample

_PRINTER_WORKING = frozenset({PrinterStatus.OK, PrinterStatus.PAPER_LOW})


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


class Vitals(NamedTuple):
    """What one health report adds to its hour's rollup."""

    temperature: float | None
    battery: float | None
    rssi: int | None
    host_unreachable: bool
    printer_fault: bool
    tamper: bool
    reader_reads: int | None
    """Reads over the three card interfaces (cumulative since reboot)."""
    reader_errors: int | None
    declined: int | None

    @classmethod
    def of(cls, m: HealthMetrics) -> Vitals:
        """The vitals of one report's metrics."""
        reader, network, txn = m.card_reader, m.network, m.transactions
        return cls(
            m.temperature_c,
            m.battery.percent if m.battery is not None else None,
            network.rssi_dbm if network is not None else None,
            network is not None and not network.host_reachable,
            m.printer is not None and m.printer.status not in _PRINTER_WORKING,
            m.tamper,
            reader.chip.reads + reader.magstripe.reads + reader.contactless.reads
            if reader is not None
            else None,
            reader.chip.errors + reader.magstripe.errors + reader.contactless.errors
            if reader is not None
            else None,
            txn.declined if txn is not None else None,
        )


@dataclass(slots=True)
class _Hour:
    """One terminal's hour, summed over a batch (the columns of ``health_rollups``)."""

    samples: int = 0
    temperature_sum: float = 0.0
    temperature_count: int = 0
    temperature_max: float | None = None
    battery_min: float | None = None
    rssi_min: int | None = None
    host_unreachable: int = 0
    printer_faults: int = 0
    tamper: int = 0
    reader_reads_max: int | None = None
    reader_errors_max: int | None = None
    declined_max: int | None = None

    def add(self, v: Vitals) -> None:
        self.samples += 1
        if v.temperature is not None:
            self.temperature_sum += v.temperature
            self.temperature_count += 1
            self.temperature_max = _larger(self.temperature_max, v.temperature)
        self.battery_min = _smaller(self.battery_min, v.battery)
        self.rssi_min = _smaller(self.rssi_min, v.rssi)
        self.host_unreachable += v.host_unreachable
        self.printer_faults += v.printer_fault
        self.tamper += v.tamper
        self.reader_reads_max = _larger(self.reader_reads_max, v.reader_reads)
        self.reader_errors_max = _larger(self.reader_errors_max, v.reader_errors)
        self.declined_max = _larger(self.declined_max, v.declined)

    def values(self) -> tuple[int | float | None, ...]:
        """The row's values after ``terminal_id`` and ``hour``, in :data:`_COLUMNS` order."""
        return tuple(getattr(self, column) for column in _COLUMNS[2:])


def _values_of_one(v: Vitals) -> tuple[int | float | None, ...]:
    """:meth:`_Hour.values` of an hour holding the single report ``v`` (the usual case)."""
    temperature = v.temperature
    return (
        1,
        0.0 if temperature is None else temperature,
        0 if temperature is None else 1,
        int(v.host_unreachable),
        int(v.printer_fault),
        int(v.tamper),
        v.battery,
        v.rssi,
        temperature,
        v.reader_reads,
        v.reader_errors,
        v.declined,
    )


_N = TypeVar("_N", int, float)


def _larger(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    return a if b is None or a >= b else b


def _smaller(a: _N | None, b: _N | None) -> _N | None:
    if a is None:
        return b
    return a if b is None or a <= b else b


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
_COLUMNS = ("terminal_id", "hour", *_SUMS, *_MINIMA, *_MAXIMA)


def _extreme(column: str, keep: str) -> str:
    """SQL keeping the smaller (``<``) or larger (``>``) of a stored and a new nullable value."""
    old, new = f"health_rollups.{column}", f"excluded.{column}"
    return (
        f"{column} = CASE WHEN {old} IS NULL THEN {new} WHEN {new} IS NULL THEN {old} "
        f"WHEN {new} {keep} {old} THEN {new} ELSE {old} END"
    )


_ON_CONFLICT = " ON CONFLICT (terminal_id, hour) DO UPDATE SET " + ", ".join(
    [f"{c} = health_rollups.{c} + excluded.{c}" for c in _SUMS]
    + [_extreme(c, "<") for c in _MINIMA]
    + [_extreme(c, ">") for c in _MAXIMA]
)


def hour_of(ts: datetime) -> datetime:
    """The start of the UTC hour ``ts`` falls in (``ts`` being UTC, as contract times are)."""
    return ts.replace(minute=0, second=0, microsecond=0)


async def merge_rollups(
    conn: AsyncConnection, samples: Iterable[Sample], sql: DriverSql | None = None
) -> None:
    """Add newly stored ``samples`` to the hourly rollups, in the caller's transaction."""
    # An hour usually gets one report per batch: keep its vitals as they are, and sum
    # into an _Hour only when a second report of the same hour turns up.
    hours: dict[tuple[str, datetime], Vitals | _Hour] = {}
    for sample in samples:
        key = (sample.terminal_id, hour_of(sample.ts))
        seen = hours.get(key)
        if seen is None:
            hours[key] = sample.vitals
            continue
        if not isinstance(seen, _Hour):
            first, seen = seen, _Hour()
            seen.add(first)
            hours[key] = seen
        seen.add(sample.vitals)
    if not hours:
        return
    sql = sql or DriverSql(conn)
    rows = [
        (
            terminal_id,
            sql.timestamp(start),
            *(hour.values() if isinstance(hour, _Hour) else _values_of_one(hour)),
        )
        for (terminal_id, start), hour in hours.items()
    ]
    width = len(_COLUMNS)
    template = ", ".join(f"{{{i}}}" for i in range(width))
    insert = f"INSERT INTO health_rollups ({', '.join(_COLUMNS)}) VALUES "
    for chunk in chunks(rows):
        params = tuple(itertools.chain.from_iterable(chunk))
        await conn.exec_driver_sql(
            insert + sql.values_rows(len(chunk), template, width) + _ON_CONFLICT, params
        )


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
