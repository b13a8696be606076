"""The period a report covers: ``from`` and ``to``, or a preset (7, 30 or 90 days).

A plain date is a whole UTC day: ``from=2026-03-01`` starts at its midnight and
``to=2026-03-31`` ends at the next one, so a month is ``from`` its first day ``to`` its
last. A time (ISO 8601, UTC when it names no zone) is taken as it is; ``to`` is
exclusive. A period is at most :data:`MAX_SPAN` long: every report reads the incidents
opened in it through the ``opened_at`` index, and the span bounds that range.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum

from posfleet.reports.errors import PeriodError

MAX_SPAN = timedelta(days=366)
"""The longest period a report may cover (a leap year)."""

_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Preset(StrEnum):
    """The periods the reports page offers, ending now."""

    WEEK = "7d"
    MONTH = "30d"
    QUARTER = "90d"

    @property
    def span(self) -> timedelta:
        """The preset's length."""
        return timedelta(days=int(self.value.removesuffix("d")))


DEFAULT_PRESET = Preset.MONTH


@dataclass(frozen=True, slots=True)
class ReportPeriod:
    """``[since, until)`` in UTC; ``preset`` when it was chosen as one."""

    since: datetime
    until: datetime
    preset: Preset | None = None

    @property
    def days(self) -> float:
        """The period's length in days."""
        return (self.until - self.since) / timedelta(days=1)


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def parse_moment(raw: str, parameter: str, *, end: bool) -> datetime:
    """``raw`` as an aware UTC time; a plain date is its day's start (or, ``end``, the next)."""
    text = raw.strip()
    try:
        if _DATE.fullmatch(text):
            day = date.fromisoformat(text)
            moment = datetime.combine(day, time(0), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, OverflowError):
        raise PeriodError(
            parameter,
            f"{parameter} must be a date such as 2026-03-01 or an ISO 8601 time such as "
            f"2026-03-01T09:30:00Z, not {_shown(raw)}",
        ) from None
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)


def parse_period(
    start: str | None,
    end: str | None,
    preset: str | None,
    *,
    now: datetime,
) -> ReportPeriod:
    """The period from the ``from``, ``to`` and ``preset`` inputs (any may be ``None``).

    With neither ``from`` nor ``to``, the preset (30 days by default) ending ``now``. With
    a ``from`` only, up to ``now``; with a ``to`` only, the preset's length before it.
    """
    chosen: Preset | None = None
    if preset is not None:
        try:
            chosen = Preset(preset)
        except ValueError:
            choices = ", ".join(p.value for p in Preset)
            raise PeriodError(
                "preset", f"preset must be one of {choices}, not {_shown(preset)}"
            ) from None
        if start is not None or end is not None:
            raise PeriodError("preset", "give either a preset or from/to, not both")
    span = (chosen or DEFAULT_PRESET).span
    until = parse_moment(end, "to", end=True) if end is not None else now
    since = parse_moment(start, "from", end=False) if start is not None else until - span
    if until <= since:
        raise PeriodError("to", "to must be after from")
    if until - since > MAX_SPAN:
        raise PeriodError(
            "to", f"a report covers at most {MAX_SPAN.days} days; choose a shorter period"
        )
    if start is None and end is None:
        chosen = chosen or DEFAULT_PRESET
    return ReportPeriod(since=since, until=until, preset=chosen)
