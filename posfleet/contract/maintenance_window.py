"""When a maintenance window is open, in the terminal's own time zone. Pure: the time is passed in.

A :class:`~posfleet.contract.MaintenanceWindow` is a local wall-clock span:

- ``start < end``: the same day, ``[start, end)``;
- ``start > end``: it wraps past midnight and closes at ``end`` the next morning;
- ``start == end``: the whole day, 24 hours from ``start``.

``weekdays`` (0 = Monday) name the days a window *opens* on: ``22:00-06:00`` on Friday
only runs from Friday 22:00 into Saturday 06:00. Local times come from the IANA zone
(:mod:`zoneinfo`), so daylight saving time is followed: a wall time skipped by a
spring-forward change is read with the offset before the change (02:30 becomes 03:30
summer time, after the jump), and one that happens twice in autumn means the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from posfleet.contract.firmware import MaintenanceWindow

_LOOK_BACK_DAYS = 1
"""A window that wraps past midnight may have opened yesterday (local)."""
_LOOK_AHEAD_DAYS = 8
"""Far enough to find the next opening of a window that opens on one weekday only."""


@dataclass(frozen=True, slots=True)
class WindowState:
    """Where ``now`` stands relative to a window."""

    open: bool
    closes_at: datetime | None
    """While open: when this opening ends (UTC)."""
    opens_at: datetime | None
    """While closed: when the next opening starts (UTC); None if it never opens."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ``ValueError`` with a clear message if there is none."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {name!r}") from None


def _hhmm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _openings(
    window: MaintenanceWindow, first: date, days: int, tz: ZoneInfo
) -> list[tuple[datetime, datetime]]:
    """Each (start, end) in UTC of the window opening on the days from ``first``."""
    start, end = _hhmm(window.start), _hhmm(window.end)
    spans = []
    for offset in range(days):
        day = first + timedelta(days=offset)
        if day.weekday() not in window.weekdays:
            continue
        end_day = day if start < end else day + timedelta(days=1)
        opens = datetime.combine(day, start, tzinfo=tz).astimezone(UTC)
        closes = datetime.combine(end_day, end, tzinfo=tz).astimezone(UTC)
        spans.append((opens, closes))
    return spans


def window_state(window: MaintenanceWindow, now: datetime, tz: ZoneInfo) -> WindowState:
    """Whether ``window`` is open at ``now`` (aware) in zone ``tz``, and until or from when."""
    if now.tzinfo is None:
        raise ValueError("window_state needs an aware datetime")
    now = now.astimezone(UTC)
    today = now.astimezone(tz).date()
    first = today - timedelta(days=_LOOK_BACK_DAYS)
    next_start: datetime | None = None
    for opens, closes in _openings(window, first, _LOOK_BACK_DAYS + _LOOK_AHEAD_DAYS, tz):
        if opens <= now < closes:
            return WindowState(open=True, closes_at=closes, opens_at=None)
        if opens > now and (next_start is None or opens < next_start):
            next_start = opens
    return WindowState(open=False, closes_at=None, opens_at=next_start)


def describe(window: MaintenanceWindow, tz: ZoneInfo) -> str:
    """``22:00-06:00 Europe/Berlin, Mon-Fri`` style text for status details."""
    names = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
    days = sorted(set(window.weekdays))
    if days == list(range(7)):
        when = "every day"
    elif days and days == list(range(days[0], days[-1] + 1)) and len(days) > 2:
        when = f"{names[days[0]]}-{names[days[-1]]}"
    else:
        when = ",".join(names[d] for d in days) or "never"
    return f"{window.start}-{window.end} {tz.key}, {when}"
