"""Window openings for the rollout preview: each terminal's own zone, across DST changes.

The centre's estimate must agree with what the agent will do on the terminal, so every
answer is checked against the agent's own :func:`window_state` as well as by hand.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from posfleet.contract import MaintenanceWindow
from posfleet.contract.maintenance_window import window_state, zone
from posfleet.firmware.rollout_windows import WindowCalendar

NIGHT = MaintenanceWindow(start="22:00", end="06:00")


def _utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_one_instant_is_inside_shanghais_window_and_before_berlins() -> None:
    at = _utc(3, 10, 15)  # 23:00 in Shanghai, 16:00 in Berlin
    calendar = WindowCalendar(NIGHT, since=at)
    assert calendar.install_time("Asia/Shanghai", at) == at
    assert calendar.install_time("Europe/Berlin", at) == _utc(3, 10, 21)  # 22:00 CET


def test_berlins_short_spring_night_and_long_autumn_night() -> None:
    spring = WindowCalendar(NIGHT, since=_utc(3, 28, 12))
    assert spring.install_time("Europe/Berlin", _utc(3, 28, 12)) == _utc(3, 28, 21)  # 22:00 CET
    assert spring.install_time("Europe/Berlin", _utc(3, 29, 3, 59)) == _utc(3, 29, 3, 59)
    # 06:00 CEST is 04:00 UTC: a seven-hour night; the next one opens at 22:00 CEST.
    assert spring.install_time("Europe/Berlin", _utc(3, 29, 4)) == _utc(3, 29, 20)

    autumn = WindowCalendar(NIGHT, since=_utc(10, 24, 12))
    assert autumn.install_time("Europe/Berlin", _utc(10, 24, 12)) == _utc(10, 24, 20)  # CEST
    # 06:00 CET is 05:00 UTC: a nine-hour night.
    assert autumn.install_time("Europe/Berlin", _utc(10, 25, 4, 59)) == _utc(10, 25, 4, 59)
    assert autumn.install_time("Europe/Berlin", _utc(10, 25, 5)) == _utc(10, 25, 21)  # CET


def test_new_york_changes_on_another_weekend_than_berlin() -> None:
    calendar = WindowCalendar(NIGHT, since=_utc(3, 7, 12))
    # Sat 7 March 22:00 EST is 03:00 UTC; Sun 8 March 22:00 EDT is 02:00 UTC on the 9th.
    assert calendar.install_time("America/New_York", _utc(3, 7, 12)) == _utc(3, 8, 3)
    assert calendar.install_time("America/New_York", _utc(3, 8, 12)) == _utc(3, 9, 2)
    assert calendar.install_time("Europe/Berlin", _utc(3, 8, 12)) == _utc(3, 8, 21)


def test_weekday_windows_wait_over_the_weekend() -> None:
    weekdays = MaintenanceWindow(start="01:00", end="04:00", weekdays=[0, 1, 2, 3, 4])
    friday_night = _utc(3, 13, 23)
    calendar = WindowCalendar(weekdays, since=friday_night)
    assert calendar.install_time("Europe/Berlin", friday_night) == _utc(3, 16, 0)  # Mon 01:00


def test_an_all_day_window_is_always_open() -> None:
    always = MaintenanceWindow(start="00:00", end="00:00")
    calendar = WindowCalendar(always, since=_utc(3, 1, 0))
    for hours in range(0, 24 * 40, 7):
        at = _utc(3, 1, 0) + timedelta(hours=hours)
        assert calendar.install_time("Australia/Sydney", at) == at


def test_unknown_zones_are_read_as_utc_and_remembered() -> None:
    calendar = WindowCalendar(NIGHT, since=_utc(3, 10, 12))
    assert calendar.install_time("Mars/Olympus", _utc(3, 10, 12)) == _utc(3, 10, 22)
    assert calendar.unknown_zones == {"Mars/Olympus"}


def test_times_before_since_count_from_since() -> None:
    calendar = WindowCalendar(NIGHT, since=_utc(3, 10, 23))
    assert calendar.install_time("UTC", _utc(3, 10, 12)) == _utc(3, 10, 23)
    with pytest.raises(ValueError, match="aware datetime"):
        WindowCalendar(NIGHT, since=datetime(2026, 3, 10))


@pytest.mark.parametrize(
    "window",
    [
        NIGHT,
        MaintenanceWindow(start="01:00", end="04:00", weekdays=[0, 1, 2, 3, 4]),
        MaintenanceWindow(start="02:30", end="03:30"),
        MaintenanceWindow(start="00:00", end="00:00", weekdays=[5, 6]),
        MaintenanceWindow(start="23:45", end="00:15", weekdays=[6]),
    ],
    ids=["night", "weekday-early", "inside-the-dst-hour", "weekends", "sunday-midnight"],
)
def test_the_calendar_agrees_with_the_agent_across_dst_weeks(window: MaintenanceWindow) -> None:
    zones = [
        "Europe/Berlin",
        "America/New_York",
        "Australia/Sydney",
        "Asia/Kolkata",
        "Pacific/Chatham",
        "UTC",
    ]
    rng = random.Random(window.start + window.end)
    for since in (_utc(3, 5, 0), _utc(10, 20, 0), _utc(3, 30, 0)):
        calendar = WindowCalendar(window, since=since)
        instants = [since + timedelta(minutes=17 * k) for k in range(0, 14 * 24 * 60 // 17)]
        rng.shuffle(instants)  # the calendar need not be asked in order
        for at in instants[:600]:
            name = rng.choice(zones)
            assert calendar.install_time(name, at) == _agent_installs_at(window, name, at)


def _agent_installs_at(window: MaintenanceWindow, zone_name: str, at: datetime) -> datetime:
    """What the agent does: wait for the next opening and look again, until it is open."""
    t = at
    for _ in range(10):
        state = window_state(window, t, zone(zone_name))
        if state.open:
            return t
        assert state.opens_at is not None
        t = state.opens_at
    raise AssertionError("the window never opened")


def test_a_window_inside_the_skipped_hour_does_not_open_that_night() -> None:
    # New York skips 02:00-03:00 on 8 March: 02:30 EST and 03:30 EDT are the same instant,
    # so the agent's window is empty that night and it installs the next night.
    dst_hour = MaintenanceWindow(start="02:30", end="03:30")
    calendar = WindowCalendar(dst_hour, since=_utc(3, 7, 22))
    assert calendar.install_time("America/New_York", _utc(3, 7, 22)) == _utc(3, 9, 6, 30)
    assert _agent_installs_at(dst_hour, "America/New_York", _utc(3, 7, 22)) == _utc(3, 9, 6, 30)
