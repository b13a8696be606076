"""When each terminal's maintenance window opens, for the rollout preview; pure.

The window is local wall-clock time in **each terminal's own** IANA zone, DST included.
The rules are the ones the agent applies (:mod:`posfleet.contract.maintenance_window`,
pure, part of the contract): the centre's estimate and the terminal's decision must agree,
so both sides use that one module instead of two copies of the window math.
What this module adds is speed: a preview asks for 100,000 terminals in a few hundred
zones, so each zone's openings are computed once and then found by bisection.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from posfleet.contract import MaintenanceWindow
from posfleet.contract.maintenance_window import window_state, zone

_CHUNK = timedelta(days=14)
"""How far ahead a zone's openings are computed at a time."""
_MAX_HORIZON = timedelta(days=400)
"""No estimate looks further than this past ``since`` (a year of waves is plenty)."""


class WindowCalendar:
    """Openings of one maintenance window in any number of zones, from ``since`` on.

    ``install_time(zone_name, at)`` is the earliest instant at or after ``at`` that the
    window is open in that zone. A zone name that is not an IANA zone is read as UTC and
    remembered in :attr:`unknown_zones` (the preview says so; the agent uses its own).
    """

    def __init__(self, window: MaintenanceWindow, *, since: datetime) -> None:
        if since.tzinfo is None:
            raise ValueError("WindowCalendar needs an aware datetime")
        self.window = window
        self.since = since.astimezone(UTC)
        self.unknown_zones: set[str] = set()
        self._zones: dict[str, ZoneInfo] = {}
        self._opens: dict[str, list[datetime]] = {}
        self._closes: dict[str, list[datetime]] = {}
        self._until: dict[str, datetime] = {}

    def _zone(self, name: str) -> ZoneInfo:
        tz = self._zones.get(name)
        if tz is None:
            try:
                tz = zone(name)
            except ValueError:
                self.unknown_zones.add(name)
                tz = ZoneInfo("UTC")
            self._zones[name] = tz
        return tz

    def _extend(self, name: str, upto: datetime) -> None:
        """Compute ``name``'s openings until one closes after ``upto`` (or the horizon)."""
        tz = self._zone(name)
        opens = self._opens.setdefault(name, [])
        closes = self._closes.setdefault(name, [])
        t = self._until.get(name, self.since)
        limit = min(upto + _CHUNK, self.since + _MAX_HORIZON)
        while t < limit:
            state = window_state(self.window, t, tz)
            if state.open:
                assert state.closes_at is not None
                if not closes or closes[-1] < t:
                    opens.append(t)
                    closes.append(state.closes_at)
                else:  # adjoining opening (an all-day window): one longer span
                    closes[-1] = state.closes_at
                t = state.closes_at
            elif state.opens_at is None:
                t = limit  # never opens: nothing more to find
                break
            else:
                t = state.opens_at
        self._until[name] = t

    def install_time(self, zone_name: str, at: datetime) -> datetime | None:
        """The first instant at or after ``at`` the window is open in ``zone_name``.

        None if it does not open within 400 days of ``since``.
        """
        at = self.since if at < self.since else at  # not max(): this runs per terminal
        closes = self._closes.get(zone_name)
        if closes is None or not closes or closes[-1] <= at:
            if self._until.get(zone_name, self.since) < self.since + _MAX_HORIZON:
                self._extend(zone_name, at)
            closes = self._closes[zone_name]
        index = bisect.bisect_right(closes, at)
        if index == len(closes):
            return None
        opens = self._opens[zone_name][index]
        return at if opens <= at else opens
