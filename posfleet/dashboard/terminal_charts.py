"""A terminal's health over 24 hours or 7 days, hour by hour, from the stored rollups.

The series are what support looks at when a merchant says "since yesterday": the lowest
battery, the hottest temperature and the weakest signal of each hour, the share of card
reads that failed, and how many payments were declined. One query per chart set: the
terminal's rows of ``health_rollups`` over the period (plus the hour before, to turn the
cumulative counters of the first hour into that hour's increase).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

import pydantic
from multidict import MultiMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.query_params import shown, single
from posfleet.dashboard.templating import _
from posfleet.store.health_rollups import HealthRollup, list_rollups

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
CHART_LIBRARY = Path(__file__).resolve().with_name("static") / "vendor" / "chart.min.js"
"""Chart.js, copied from Debian's libjs-chart.js by ``make setup`` (not in git)."""
CHART_LIBRARY_SCRIPT = "vendor/chart.min.js"
"""Its name under ``/static/``."""


class ChartPeriod(StrEnum):
    """How far back the charts reach."""

    DAY = "24h"
    WEEK = "7d"

    @property
    def span(self) -> timedelta:
        """The period as a duration."""
        return timedelta(hours=24) if self is ChartPeriod.DAY else timedelta(days=7)


class ChartSeries(pydantic.BaseModel):
    """One figure per hour; ``None`` where the terminal sent nothing that hour."""

    model_config = pydantic.ConfigDict(frozen=True)

    name: str
    """``battery``, ``temperature``, ``rssi``, ``reader_error_rate`` or ``declines``."""
    label: str
    unit: str
    values: list[float | None]
    """Aligned with :attr:`TerminalCharts.hours`."""


class TerminalCharts(pydantic.BaseModel):
    """A terminal's chart set over one period."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    period: ChartPeriod
    hours: list[datetime]
    """The start of every UTC hour in the period, oldest first (the current one last)."""
    series: list[ChartSeries]


def parse_period(query: MultiMapping[str]) -> ChartPeriod:
    """The ``period`` parameter: ``24h`` (the default) or ``7d``."""
    raw = single(query, "period")
    if raw is None:
        return ChartPeriod.DAY
    try:
        return ChartPeriod(raw)
    except ValueError:
        raise InvalidParameterError(
            "period", _("period must be 24h or 7d, not %(v)s") % {"v": shown(raw)}
        ) from None


def _increase(current: int | None, previous: int | None) -> int | None:
    """A counter's growth since its previous figure; a counter that fell was reset (restart).

    A figure after a gap of hours counts the whole gap's growth in its own hour.
    """
    if current is None:
        return None
    if previous is None or current < previous:
        # No earlier figure, or the terminal restarted: all it counted since is new.
        return current if previous is not None else None
    return current - previous


Counters = Mapping[str, int | None]
"""The last figure each cumulative counter had before the row, by column name."""
COUNTERS = ("reader_reads_max", "reader_errors_max", "declined_max")


def _grown(row: HealthRollup, before: Counters, column: str) -> int | None:
    current: int | None = getattr(row, column)
    return _increase(current, before.get(column))


def _error_rate(row: HealthRollup, before: Counters) -> float | None:
    reads = _grown(row, before, "reader_reads_max")
    errors = _grown(row, before, "reader_errors_max")
    if not reads or errors is None:
        return None
    return round(100 * errors / reads, 1)


def _declines(row: HealthRollup, before: Counters) -> float | None:
    found = _grown(row, before, "declined_max")
    return None if found is None else float(found)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


Figure = Callable[[HealthRollup, Counters], float | None]

_SERIES: tuple[tuple[str, str, str, Figure], ...] = (
    ("battery", _("Battery (lowest)"), "%", lambda r, _b: _round(r.battery_min)),
    ("temperature", _("Temperature (highest)"), "°C", lambda r, _b: _round(r.temperature_max)),
    ("rssi", _("Signal (weakest)"), "dBm", lambda r, _b: _round(r.rssi_min)),
    ("reader_error_rate", _("Card reads failed"), "%", _error_rate),
    ("declines", _("Declined payments"), _("per hour"), _declines),
)


def _hour_of(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def chart_hours(period: ChartPeriod, now: datetime) -> list[datetime]:
    """Every hour of the period ending with the current one, oldest first."""
    last = _hour_of(now)
    count = int(period.span / HOUR)
    return [last - HOUR * (count - 1 - i) for i in range(count)]


def build_charts(
    terminal_id: str, period: ChartPeriod, rows: Sequence[HealthRollup], now: datetime
) -> TerminalCharts:
    """The chart set from a terminal's rollups (oldest first, may start before the period)."""
    hours = chart_hours(period, now)
    by_hour: dict[datetime, tuple[HealthRollup, Counters]] = {}
    last: dict[str, int | None] = {}
    for row in rows:
        by_hour[row.hour] = (row, dict(last))
        for column in COUNTERS:
            figure = getattr(row, column)
            if figure is not None:
                last[column] = figure
    series = []
    for name, label, unit, figure in _SERIES:
        values = []
        for hour in hours:
            found = by_hour.get(hour)
            values.append(figure(*found) if found else None)
        series.append(ChartSeries(name=name, label=label, unit=unit, values=values))
    return TerminalCharts(terminal_id=terminal_id, period=period, hours=hours, series=series)


async def fetch_charts(
    conn: AsyncConnection, terminal_id: str, period: ChartPeriod, now: datetime
) -> TerminalCharts:
    """The chart set of one terminal, in one query."""
    first = chart_hours(period, now)[0]
    # The hour before the period: its counters are where the first hour's increase starts.
    rows = await list_rollups(conn, terminal_id, since=first - HOUR)
    return build_charts(terminal_id, period, rows, now)


def chart_library_present() -> bool:
    """Whether the charting library is in place; logs how to get it when it is not."""
    if CHART_LIBRARY.is_file():
        return True
    log.warning(
        "the charting library %s is missing, so terminal pages show their health history "
        "as tables only; install Debian's libjs-chart.js and run 'make setup' to copy it",
        CHART_LIBRARY,
    )
    return False
