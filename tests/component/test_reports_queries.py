"""The reports' figures on the seeded dataset, checked against sums done by hand
(tests/component/report_rows.py), on SQLite and PostgreSQL; and the same figures in the
CSV and XLSX downloads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.diagnostics.analytics import mean_times
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.reports import (
    ExportFormat,
    ReportBase,
    ReportOptions,
    build_report,
    export,
    file_name,
    parse_period,
)
from posfleet.reports.models import (
    MaintenanceReport,
    RepeatedFaultsReport,
    ResponseTimesReport,
    TopProblemsReport,
    WeeklyTrendReport,
)
from tests.component.report_rows import FROM, TO, seed_reports

NOW = datetime(2026, 4, 1, tzinfo=UTC)
PERIOD = parse_period(FROM, TO, None, now=NOW)


@pytest.fixture
async def seeded(engine: AsyncEngine) -> AsyncEngine:
    await seed_reports(engine)
    return engine


async def _build(engine: AsyncEngine, name: str) -> ReportBase:
    async with engine.connect() as conn:
        return await build_report(
            conn, name, PERIOD, rules=load_builtin_rules(), options=ReportOptions(top=3), now=NOW
        )


async def test_the_reports_and_their_downloads_match_the_hand_computed_figures(
    seeded: AsyncEngine,
) -> None:
    top = await _build(seeded, "top-problems")
    assert isinstance(top, TopProblemsReport)
    assert top.total == 6
    ranked = {(r.dimension, r.key): r.incidents for r in top.rows}
    assert [(r.key, r.incidents) for r in top.rows if r.dimension == "rule"] == [
        ("printer.paper_out", 3),
        ("card_reader.errors", 1),
        ("network.host_unreachable", 1),
    ]
    assert ranked[("model", "V400m")] == 5 and ranked[("model", "P400")] == 1
    assert ranked[("firmware", "5.2.1")] == 3 and ranked[("firmware", "5.3.0")] == 3
    assert ranked[("merchant", "M-1")] == 3 and ranked[("merchant", "M-2")] == 3
    assert [r.key for r in top.rows if r.dimension == "site"] == ["S-1", "S-2", "S-3"]

    times = await _build(seeded, "response-times")
    assert isinstance(times, ResponseTimesReport)
    by = {(r.group, r.key): r for r in times.rows}
    overall = by[("all", None)]
    assert (overall.incidents, overall.acknowledged, overall.resolved) == (6, 4, 4)
    assert (overall.mtta_s, overall.mttr_s) == (975.0, 4500.0)
    assert (by[("severity", "critical")].mtta_s, by[("severity", "critical")].mttr_s) == (
        None,
        1800.0,
    )
    assert (by[("severity", "error")].mtta_s, by[("severity", "error")].mttr_s) == (750.0, 7200.0)
    assert (by[("severity", "warning")].mtta_s, by[("severity", "warning")].mttr_s) == (
        1200.0,
        4500.0,
    )
    assert (by[("assignee", "alice")].mtta_s, by[("assignee", "alice")].mttr_s) == (900.0, 5400.0)
    assert (by[("assignee", "bob")].mtta_s, by[("assignee", "bob")].mttr_s) == (1050.0, 5400.0)
    unassigned = by[("assignee", None)]
    assert (unassigned.incidents, unassigned.mtta_s, unassigned.mttr_s) == (2, None, 1800.0)
    async with seeded.connect() as conn:
        # The overall row is what the incidents analytics says too (SQLite's julianday()
        # arithmetic is off by milliseconds; the report rounds to tenths of a second).
        mtta, mttr = await mean_times(conn, since=PERIOD.since, until=PERIOD.until)
    assert mtta == pytest.approx(975.0, abs=0.01)
    assert mttr == pytest.approx(4500.0, abs=0.01)

    trend = await _build(seeded, "weekly-trend")
    assert isinstance(trend, WeeklyTrendReport)
    assert [(r.week_start, r.incidents) for r in trend.rows] == [
        (date(2026, 3, 2), 3),
        (date(2026, 3, 9), 3),
        (date(2026, 3, 16), 0),
    ]

    repeats = await _build(seeded, "repeated-faults")
    assert isinstance(repeats, RepeatedFaultsReport)
    assert [(r.terminal_id, r.component, r.incidents, r.rules) for r in repeats.rows] == [
        ("T-1", "printer", 3, 2)
    ]
    assert repeats.rows[0].first_opened_at == datetime(2026, 3, 2, 9, tzinfo=UTC)
    assert repeats.rows[0].last_opened_at == datetime(2026, 3, 9, 10, tzinfo=UTC)

    wear = await _build(seeded, "maintenance")
    assert isinstance(wear, MaintenanceReport)
    assert {(w.counter, w.comparison, w.limit) for w in wear.limits} == {
        ("printer.lines_printed", ">=", 2_000_000.0),
        ("card_reader.insertions_total", ">=", 500_000.0),
        ("battery.cycles", ">=", 500.0),
        ("battery.health_percent", "<", 60.0),
    }
    assert [(r.terminal_id, r.counter, r.wear_percent) for r in wear.rows] == [
        ("T-5", "battery.cycles", 104.0),
        ("T-1", "printer.lines_printed", 95.0),
        ("T-3", "battery.cycles", 90.0),
        ("T-2", "card_reader.insertions_total", 80.0),
    ]

    # The downloads hold the same figures.
    rows = list(csv.DictReader(io.StringIO(export(times, ExportFormat.CSV).decode())))
    assert list(rows[0]) == [
        "group", "key", "incidents", "acknowledged", "resolved", "mtta_s", "mttr_s"
    ]  # fmt: skip
    assert rows[0] == {
        "group": "all", "key": "", "incidents": "6", "acknowledged": "4", "resolved": "4",
        "mtta_s": "975.0", "mttr_s": "4500.0",
    }  # fmt: skip
    assert len(rows) == len(times.rows)
    assert file_name(times, ExportFormat.CSV) == "response-times_2026-03-02_2026-03-21.csv"

    top = await _build(seeded, "top-problems")
    book = load_workbook(io.BytesIO(export(top, ExportFormat.XLSX)), read_only=True)
    sheet = list(book["top-problems"].iter_rows(values_only=True))
    assert sheet[0] == ("dimension", "key", "incidents")
    assert sheet[1] == ("rule", "printer.paper_out", 3)
    assert len(sheet) - 1 == len(top.row_list())
    period = dict(book["period"].iter_rows(values_only=True))
    assert period["since_utc"] == datetime(2026, 3, 2)
    assert period["until_utc"] == datetime(2026, 3, 22)
