"""When the scheduled summary falls due and which period it covers, and the report
periods' inputs: pure functions of the clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from posfleet.reports import PeriodError, SummaryCadence, SummarySchedule, parse_period

NOW = datetime(2026, 4, 1, tzinfo=UTC)


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cadence", "now", "key"),
    [
        (SummaryCadence.DAILY, _at(18, 5), "daily:2026-03-16"),  # before 06:00: the day before
        (SummaryCadence.DAILY, _at(18, 6), "daily:2026-03-17"),
        (SummaryCadence.WEEKLY, _at(16, 5), "weekly:2026-03-02"),  # Monday before 06:00
        (SummaryCadence.WEEKLY, _at(16, 6), "weekly:2026-03-09"),
        (SummaryCadence.WEEKLY, _at(22, 23), "weekly:2026-03-09"),  # all that week
    ],
)
def test_the_due_summary_is_the_last_whole_period(
    cadence: SummaryCadence, now: datetime, key: str
) -> None:
    due = SummarySchedule(cadence, hour_utc=6).due(now)
    assert due is not None and due.key == key
    assert due.until - due.since == timedelta(days=1 if cadence is SummaryCadence.DAILY else 7)


def test_no_summary_is_due_when_off() -> None:
    assert SummarySchedule().due(_at(16, 12)) is None
    with pytest.raises(ValueError, match="hour"):
        SummarySchedule(SummaryCadence.DAILY, hour_utc=24)


@pytest.mark.parametrize(
    ("start", "end", "preset", "parameter"),
    [
        ("2026-03-10", "2026-03-01", None, "to"),
        ("2026-13-01", None, None, "from"),
        ("yesterday", None, None, "from"),
        ("2025-01-01", "2026-03-01", None, "to"),
        (None, None, "8d", "preset"),
        ("2026-03-01", None, "7d", "preset"),
    ],
)
def test_a_bad_period_says_which_input_is_wrong(
    start: str | None, end: str | None, preset: str | None, parameter: str
) -> None:
    with pytest.raises(PeriodError) as caught:
        parse_period(start, end, preset, now=NOW)
    assert caught.value.parameter == parameter


def test_a_preset_ends_now_and_a_date_covers_its_whole_day() -> None:
    week = parse_period(None, None, "7d", now=NOW)
    assert (week.since, week.until) == (datetime(2026, 3, 25, tzinfo=UTC), NOW)
    month = parse_period("2026-03-01", "2026-03-31", None, now=NOW)
    assert (month.since, month.until) == (datetime(2026, 3, 1, tzinfo=UTC), NOW)
    timed = parse_period("2026-03-01T09:30:00+08:00", None, None, now=NOW)
    assert timed.since == datetime(2026, 3, 1, 1, 30, tzinfo=UTC)
