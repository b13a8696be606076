"""What the engine remembers about one terminal between its messages."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from posfleet.diagnostics.counter_window import CounterWindow

MAX_EVENTS_KEPT = 512
"""Fault events kept per terminal for windowed counts; a storm cannot grow memory."""


class Phase(StrEnum):
    """Where a rule stands for one terminal."""

    IDLE = "idle"
    PENDING = "pending"
    """The condition holds but not yet for the rule's ``for`` duration."""
    FIRING = "firing"


@dataclass(slots=True)
class RuleState:
    """One rule's progress on one terminal."""

    phase: Phase = Phase.IDLE
    since: datetime | None = None
    cleared_at: datetime | None = None
    cleared_seq: int | None = None
    """The terminal's latest health report ``seq`` when the rule last cleared."""
    counters: dict[str, CounterWindow] = field(default_factory=dict)


@dataclass(slots=True)
class TerminalState:
    """The latest metrics, counters, events and rule phases of one terminal."""

    metrics: dict[str, Any] = field(default_factory=dict)
    last_seq: int | None = None
    last_report_at: datetime | None = None
    interval_s: float | None = None
    boots: int = 0
    last_uptime_s: int | None = None
    online: bool | None = None
    inventory: dict[str, Any] = field(default_factory=dict)
    firmware_changed_at: datetime | None = None
    events: deque[tuple[datetime, str]] = field(
        default_factory=lambda: deque(maxlen=MAX_EVENTS_KEPT)
    )
    rules: dict[str, RuleState] = field(default_factory=dict)
    reported: dict[str, datetime] = field(default_factory=dict)
    """Codes of terminal-reported faults no rule covers, with when each was last seen."""
    waiting_events: dict[str, datetime] = field(default_factory=dict)
    """Codes of fault events a rule covers that came before the rule's other inputs (so
    they opened reported faults), with when the first came."""
    event_seq: dict[str, int] = field(default_factory=dict)
    """The highest ``seq`` of each fault event code: a health report the terminal sent
    before it (still on its way in the other ingest lane) cannot clear what it opened."""

    def rule(self, rule_id: str) -> RuleState:
        """The state of ``rule_id``, created idle on first use."""
        found = self.rules.get(rule_id)
        if found is None:
            found = self.rules[rule_id] = RuleState()
        return found

    def variables(self, today: date) -> dict[str, Any]:
        """The CEL variables common to every rule: the metrics plus derived values."""
        variables = dict(self.metrics)
        keys = variables.get("keys")
        if isinstance(keys, dict) and isinstance(keys.get("key_expiry"), str):
            # CEL has no calendar arithmetic over a plain date string: give rules the
            # number of days left, which is what DOMAIN.md's threshold is written in.
            expiry = date.fromisoformat(keys["key_expiry"])
            variables["keys"] = {**keys, "days_to_expiry": (expiry - today).days}
        variables["boots"] = self.boots
        if self.online is not None:
            variables["online"] = self.online
        if self.inventory:
            variables["inventory"] = self.inventory
        return variables

    def count_events(self, patterns: Any, since: datetime, after: datetime | None) -> int:
        """Events at or after ``since`` (and after ``after``) whose code matches."""
        if not self.events:
            return 0
        return sum(
            1
            for at, code in self.events
            if at >= since
            and (after is None or at > after)
            and any(fnmatchcase(code, p) for p in patterns)
        )

    def absent(self, now: datetime, intervals: float) -> bool:
        """True when no message came for ``intervals`` report intervals."""
        if self.last_report_at is None or self.interval_s is None:
            return False
        return now - self.last_report_at > timedelta(seconds=intervals * self.interval_s)
