"""Maintenance windows in each terminal's own time zone, at one and the same instant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from posfleet.contract import MaintenanceWindow
from posfleet.contract.maintenance_window import describe, window_state, zone

SHANGHAI, BERLIN = zone("Asia/Shanghai"), zone("Europe/Berlin")
NIGHT = MaintenanceWindow(start="22:00", end="06:00")


def _utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


class FakeClock:
    """Time that moves only when the test says so."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def test_one_instant_opens_shanghais_window_and_not_berlins() -> None:
    clock = FakeClock(_utc(2026, 3, 10, 15, 0))  # 23:00 in Shanghai, 16:00 in Berlin
    shanghai = window_state(NIGHT, clock(), SHANGHAI)
    berlin = window_state(NIGHT, clock(), BERLIN)
    assert shanghai.open and shanghai.closes_at == _utc(2026, 3, 10, 22, 0)  # 06:00 local
    assert not berlin.open and berlin.opens_at == _utc(2026, 3, 10, 21, 0)  # 22:00 local

    clock.advance(hours=6, minutes=30)  # 21:30 UTC: 05:30 in Shanghai, 22:30 in Berlin
    assert window_state(NIGHT, clock(), SHANGHAI).open
    assert window_state(NIGHT, clock(), BERLIN).open

    clock.advance(hours=1)  # 22:30 UTC: 06:30 in Shanghai, 23:30 in Berlin
    shanghai = window_state(NIGHT, clock(), SHANGHAI)
    assert not shanghai.open and shanghai.opens_at == _utc(2026, 3, 11, 14, 0)
    berlin = window_state(NIGHT, clock(), BERLIN)
    assert berlin.open and berlin.closes_at == _utc(2026, 3, 11, 5, 0)


def test_the_window_opens_only_on_its_weekdays_and_wraps_into_the_next_day() -> None:
    fridays = MaintenanceWindow(start="22:00", end="06:00", weekdays=[4])
    thursday_night = _utc(2026, 3, 12, 22, 0)  # Thursday 23:00 in Berlin
    state = window_state(fridays, thursday_night, BERLIN)
    assert not state.open and state.opens_at == _utc(2026, 3, 13, 21, 0)  # Friday 22:00
    saturday_early = _utc(2026, 3, 14, 3, 0)  # Saturday 04:00: Friday's window
    assert window_state(fridays, saturday_early, BERLIN).open
    saturday_night = _utc(2026, 3, 14, 22, 0)
    assert window_state(fridays, saturday_night, BERLIN).opens_at == _utc(2026, 3, 20, 21, 0)


@pytest.mark.parametrize(
    ("moment", "is_open"),
    [
        (_utc(2026, 3, 10, 9, 59), False),  # 10:59 in Berlin
        (_utc(2026, 3, 10, 10, 0), True),  # 11:00
        (_utc(2026, 3, 10, 12, 59), True),  # 13:59
        (_utc(2026, 3, 10, 13, 0), False),  # 14:00: the end is not inside
    ],
)
def test_a_daytime_window_includes_its_start_and_excludes_its_end(
    moment: datetime, is_open: bool
) -> None:
    lunch = MaintenanceWindow(start="11:00", end="14:00")
    assert window_state(lunch, moment, BERLIN).open is is_open


def test_equal_start_and_end_is_open_all_day() -> None:
    always = MaintenanceWindow(start="00:00", end="00:00")
    for hour in range(0, 24, 5):
        assert window_state(always, _utc(2026, 3, 10, hour, 17), SHANGHAI).open


def test_daylight_saving_time_moves_the_utc_times_of_berlins_window() -> None:
    before = window_state(NIGHT, _utc(2026, 3, 27, 12, 0), BERLIN)  # CET, UTC+1
    after = window_state(NIGHT, _utc(2026, 3, 30, 12, 0), BERLIN)  # CEST, UTC+2
    assert before.opens_at == _utc(2026, 3, 27, 21, 0)
    assert after.opens_at == _utc(2026, 3, 30, 20, 0)
    # The night of the change: 22:00 CET to 06:00 CEST is seven hours, not eight.
    night = window_state(NIGHT, _utc(2026, 3, 28, 23, 0), BERLIN)
    assert night.open and night.closes_at == _utc(2026, 3, 29, 4, 0)


def test_a_window_start_skipped_by_the_clock_change_opens_after_the_jump() -> None:
    # 29 March 2026 Berlin: 02:00 CET jumps to 03:00 CEST; 02:30 never happens.
    sunday = MaintenanceWindow(start="02:30", end="05:00", weekdays=[6])
    state = window_state(sunday, _utc(2026, 3, 28, 12, 0), BERLIN)
    assert state.opens_at is not None
    assert state.opens_at.astimezone(BERLIN).hour == 3  # read as 02:30 CET = 03:30 CEST


def test_naive_times_and_unknown_zones_are_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        window_state(NIGHT, datetime(2026, 3, 10, 12, 0), BERLIN)
    with pytest.raises(ValueError, match="unknown IANA time zone"):
        zone("Mars/Olympus_Mons")


def test_the_description_names_times_zone_and_days() -> None:
    workdays = MaintenanceWindow(start="22:00", end="06:00", weekdays=[0, 1, 2, 3, 4])
    assert describe(workdays, BERLIN) == "22:00-06:00 Europe/Berlin, Mon-Fri"
    assert describe(NIGHT, SHANGHAI) == "22:00-06:00 Asia/Shanghai, every day"
    assert describe(MaintenanceWindow(weekdays=[5, 6, 1]), BERLIN).endswith("Tue,Sat,Sun")
