"""Every report by name, and one way to build any of them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.diagnostics.rule_model import Rule
from posfleet.reports import incident_reports, wear_report
from posfleet.reports.errors import UnknownReportError
from posfleet.reports.models import (
    MaintenanceReport,
    RepeatedFaultsReport,
    ReportBase,
    ResponseTimesReport,
    TopProblemsReport,
    WeeklyTrendReport,
)
from posfleet.reports.period import ReportPeriod


@dataclass(frozen=True, slots=True)
class ReportOptions:
    """The knobs some reports take; each report reads only its own."""

    top: int = 10
    """top-problems: rows per dimension."""
    min_incidents: int = incident_reports.DEFAULT_MIN_REPEATS
    """repeated-faults: incidents of one component that make a swap candidate."""
    near_percent: float = wear_report.DEFAULT_NEAR_PERCENT
    """maintenance: the wear from which a part is listed."""
    limit: int = 100
    """repeated-faults and maintenance: at most this many rows."""


Builder = Callable[
    [AsyncConnection, ReportPeriod, ReportOptions, Sequence[Rule], datetime],
    Awaitable[ReportBase],
]


async def _top(
    conn: AsyncConnection, p: ReportPeriod, o: ReportOptions, _r: Sequence[Rule], now: datetime
) -> ReportBase:
    return await incident_reports.top_problems(conn, p, top=o.top, now=now)


async def _times(
    conn: AsyncConnection, p: ReportPeriod, _o: ReportOptions, _r: Sequence[Rule], now: datetime
) -> ReportBase:
    return await incident_reports.response_times(conn, p, now=now)


async def _trend(
    conn: AsyncConnection, p: ReportPeriod, _o: ReportOptions, _r: Sequence[Rule], now: datetime
) -> ReportBase:
    return await incident_reports.weekly_trend(conn, p, now=now)


async def _repeats(
    conn: AsyncConnection, p: ReportPeriod, o: ReportOptions, _r: Sequence[Rule], now: datetime
) -> ReportBase:
    return await incident_reports.repeated_faults(
        conn, p, min_incidents=o.min_incidents, limit=o.limit, now=now
    )


async def _wear(
    conn: AsyncConnection, p: ReportPeriod, o: ReportOptions, rules: Sequence[Rule], now: datetime
) -> ReportBase:
    return await wear_report.maintenance(
        conn, p, rules, near_percent=o.near_percent, limit=o.limit, now=now
    )


REPORTS: dict[str, tuple[type[ReportBase], Builder]] = {
    TopProblemsReport.name: (TopProblemsReport, _top),
    ResponseTimesReport.name: (ResponseTimesReport, _times),
    WeeklyTrendReport.name: (WeeklyTrendReport, _trend),
    RepeatedFaultsReport.name: (RepeatedFaultsReport, _repeats),
    MaintenanceReport.name: (MaintenanceReport, _wear),
}
"""Each report's name, answer model and builder, in the order the pages list them."""

REPORT_NAMES = list(REPORTS)


def report_model(name: str) -> type[ReportBase]:
    """The answer model of the report ``name``."""
    try:
        return REPORTS[name][0]
    except KeyError:
        raise UnknownReportError(name, REPORT_NAMES) from None


async def build_report(
    conn: AsyncConnection,
    name: str,
    period: ReportPeriod,
    *,
    rules: Sequence[Rule],
    options: ReportOptions = ReportOptions(),
    now: datetime,
) -> ReportBase:
    """The report ``name`` over ``period``; ``rules`` are the rules in force (for the limits)."""
    report_model(name)
    return await REPORTS[name][1](conn, period, options, rules, now)
