"""When a summary is due and which period it covers: pure functions of the clock."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum


class SummaryCadence(StrEnum):
    """How often the summary goes out; ``off`` sends none."""

    OFF = "off"
    DAILY = "daily"
    WEEKLY = "weekly"


@dataclass(frozen=True, slots=True)
class SummaryPeriod:
    """One summary's period, ``[since, until)`` in UTC, and its key in the claim table."""

    cadence: SummaryCadence
    since: datetime
    until: datetime

    @property
    def key(self) -> str:
        """``daily:2026-12-06`` (the day covered) or ``weekly:2026-11-30`` (its Monday)."""
        return f"{self.cadence.value}:{self.since:%Y-%m-%d}"


@dataclass(frozen=True, slots=True)
class SummarySchedule:
    """The cadence and the UTC hour at which the last period's summary goes out."""

    cadence: SummaryCadence = SummaryCadence.OFF
    hour_utc: int = 6
    check_interval: timedelta = timedelta(minutes=1)
    """How often the loop looks whether a summary is due."""
    claim_lease: timedelta = timedelta(minutes=10)
    """A claim not marked sent after this long (its instance died) may be taken over."""

    def __post_init__(self) -> None:
        if not 0 <= self.hour_utc <= 23:
            raise ValueError("the summary hour must be from 0 to 23 (UTC)")
        if self.check_interval <= timedelta(0) or self.claim_lease <= timedelta(0):
            raise ValueError("the summary check interval and claim lease must be positive")

    def due(self, now: datetime) -> SummaryPeriod | None:
        """The newest period whose summary is due at ``now``; ``None`` when off.

        A day's summary is due from ``hour_utc`` on the next day; a week's (Monday to
        Sunday) from ``hour_utc`` on the next Monday. Before that hour, the period before.
        """
        if self.cadence is SummaryCadence.OFF:
            return None
        now = now.astimezone(UTC)
        today = datetime.combine(now.date(), time(0), tzinfo=UTC)
        if self.cadence is SummaryCadence.DAILY:
            end = today if now >= today + timedelta(hours=self.hour_utc) else today - timedelta(1)
            return SummaryPeriod(self.cadence, end - timedelta(days=1), end)
        monday = today - timedelta(days=today.weekday())
        if now < monday + timedelta(hours=self.hour_utc):
            monday -= timedelta(days=7)
        return SummaryPeriod(self.cadence, monday - timedelta(days=7), monday)
