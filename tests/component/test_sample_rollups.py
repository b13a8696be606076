"""Hourly rollups folded from stored samples, on SQLite and on a real PostgreSQL.

Whatever the batches, the folds between them, redeliveries and concurrent folders, each
hour's rollup is what the reports of that hour say, each report counted once.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Battery,
    CardReader,
    HealthMetrics,
    HealthReport,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    ReaderCounters,
    Transactions,
)
from posfleet.store import (
    HealthRollup,
    Report,
    create_engine,
    fold_samples,
    list_rollups,
    record_reports,
    rollup_watermark,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_WORKING = (PrinterStatus.OK, PrinterStatus.PAPER_LOW)
_terminal_numbers = itertools.count(1)

_counters = st.builds(ReaderCounters, reads=st.integers(0, 10**6), errors=st.integers(0, 10**4))
_metrics = st.builds(
    HealthMetrics,
    battery=st.none() | st.builds(Battery, percent=st.floats(0, 100), charging=st.booleans()),
    temperature_c=st.none() | st.floats(-60, 150),
    printer=st.none() | st.builds(Printer, status=st.sampled_from(PrinterStatus)),
    card_reader=st.none()
    | st.builds(CardReader, chip=_counters, magstripe=_counters, contactless=_counters),
    network=st.none()
    | st.builds(
        Network,
        type=st.sampled_from(NetworkType),
        rssi_dbm=st.none() | st.integers(-130, 0),
        host_reachable=st.booleans(),
    ),
    tamper=st.booleans(),
    transactions=st.none() | st.builds(Transactions, declined=st.integers(0, 10**5)),
)
_reports = st.lists(st.tuples(_metrics, st.integers(0, 3 * 3600 - 1)), min_size=1, max_size=25).map(
    lambda items: [
        HealthReport(seq=n, ts=T0 + timedelta(seconds=offset), interval_s=60, metrics=m)
        for n, (m, offset) in enumerate(items, 1)
    ]
)


def expected_rollups(terminal_id: str, reports: Sequence[HealthReport]) -> list[HealthRollup]:
    """The rollups worked out by hand from the models, one report at a time."""
    hours: dict[datetime, list[HealthMetrics]] = defaultdict(list)
    for r in reports:
        hours[r.ts.replace(minute=0, second=0, microsecond=0)].append(r.metrics)

    def least(values: list[float | int | None]) -> float | int | None:
        present = [v for v in values if v is not None]
        return min(present) if present else None

    def most(values: list[float | int | None]) -> float | int | None:
        present = [v for v in values if v is not None]
        return max(present) if present else None

    def reader(m: HealthMetrics, counter: str) -> int | None:
        if m.card_reader is None:
            return None
        c = m.card_reader
        counts: list[int] = [getattr(i, counter) for i in (c.chip, c.magstripe, c.contactless)]
        return sum(counts)

    rollups = []
    for hour, ms in sorted(hours.items()):
        temperatures = [m.temperature_c for m in ms if m.temperature_c is not None]
        rollups.append(
            HealthRollup(
                terminal_id=terminal_id,
                hour=hour,
                samples=len(ms),
                temperature_avg=statistics.fmean(temperatures) if temperatures else None,
                temperature_max=max(temperatures) if temperatures else None,
                battery_min=least([m.battery.percent if m.battery else None for m in ms]),
                rssi_min=least([m.network.rssi_dbm if m.network else None for m in ms]),
                host_unreachable=sum(
                    m.network is not None and not m.network.host_reachable for m in ms
                ),
                printer_faults=sum(
                    m.printer is not None and m.printer.status not in _WORKING for m in ms
                ),
                tamper=sum(m.tamper for m in ms),
                reader_reads_max=most([reader(m, "reads") for m in ms]),
                reader_errors_max=most([reader(m, "errors") for m in ms]),
                declined_max=most(
                    [m.transactions.declined if m.transactions else None for m in ms]
                ),
            )
        )
    return rollups


def assert_same(actual: list[HealthRollup], expected: list[HealthRollup]) -> None:
    assert [r.hour for r in actual] == [r.hour for r in expected]
    for got, want in zip(actual, expected, strict=True):
        exact = {"terminal_id", "hour", "temperature_avg"}
        assert got.model_dump(exclude=exact) == pytest.approx(want.model_dump(exclude=exact))
        if want.temperature_avg is None:
            assert got.temperature_avg is None
        else:
            assert got.temperature_avg == pytest.approx(want.temperature_avg)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(reports=_reports, cuts=st.lists(st.integers(0, 25), max_size=4), data=st.data())
async def test_rollups_count_every_report_once_however_batched_and_folded(
    engine: AsyncEngine, reports: list[HealthReport], cuts: list[int], data: st.DataObject
) -> None:
    terminal_id = f"R-{next(_terminal_numbers)}"
    bounds = sorted({0, len(reports), *(min(c, len(reports)) for c in cuts)})
    batches = [reports[a:b] for a, b in itertools.pairwise(bounds)]
    # Redeliveries: a later batch may carry reports of the batches before it again.
    plan = []
    for i, batch in enumerate(batches):
        earlier = [r for b in batches[:i] for r in b]
        again = data.draw(st.lists(st.sampled_from(earlier), max_size=3)) if earlier else []
        plan.append((batch + again, data.draw(st.booleans())))

    for batch, fold_after in plan:
        async with engine.begin() as conn:
            await record_reports(conn, [Report(terminal_id, r) for r in batch], now=T0)
        if fold_after:
            await fold_samples(engine)
    await fold_samples(engine)
    async with engine.connect() as conn:
        rollups = await list_rollups(conn, terminal_id, since=T0 - timedelta(hours=1))

    assert_same(rollups, expected_rollups(terminal_id, reports))


def health(seq: int, minutes: int, temperature: float) -> HealthReport:
    metrics = HealthMetrics(temperature_c=temperature)
    return HealthReport(seq=seq, ts=T0 + timedelta(minutes=minutes), interval_s=60, metrics=metrics)


async def test_folds_running_at_once_count_each_report_once(
    engine: AsyncEngine, database_url: str
) -> None:
    reports = [Report(f"C-{t}", health(s, s, 20.0 + s)) for t in range(20) for s in range(1, 31)]
    async with engine.begin() as conn:
        await record_reports(conn, reports, now=T0)
    others = [create_engine(database_url) for _ in range(2)]
    try:
        # Small chunks, so the folders really take turns at the watermark.
        folded = await asyncio.gather(
            fold_samples(engine, chunk=50), *(fold_samples(e, chunk=50) for e in others)
        )
    finally:
        for other in others:
            await other.dispose()

    assert sum(folded) == len(reports)
    async with engine.connect() as conn:
        rollups = await list_rollups(conn, "C-7", since=T0)
    assert [(r.hour, r.samples, r.temperature_max) for r in rollups] == [(T0, 30, 50.0)]


async def test_a_fold_moves_the_watermark_past_what_it_counted(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await record_reports(conn, [Report("W-1", health(s, s, 30.0)) for s in (1, 2, 3)], now=T0)
        before = await rollup_watermark(conn)
    assert await fold_samples(engine) == 3
    async with engine.begin() as conn:
        after = await rollup_watermark(conn)
        await record_reports(conn, [Report("W-1", health(4, 70, 35.0))], now=T0)
    assert after > before
    # Only the new report is folded next time, into its own hour.
    assert await fold_samples(engine) == 1
    async with engine.connect() as conn:
        rollups = await list_rollups(conn, "W-1", since=T0)
    assert [(r.hour, r.samples) for r in rollups] == [(T0, 3), (T0 + timedelta(hours=1), 1)]
