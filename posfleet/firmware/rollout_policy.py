"""Rollout policies: wave specs, gate tolerances and pace, with checks an operator can read.

Pure data, no I/O. Import these from :mod:`posfleet.firmware.rollout_model`, which
re-exports them with the rest of the rollout vocabulary; they live here to keep each
module readable. Every class checks itself when built and raises
:class:`RolloutPolicyError` (a :class:`ValueError`) naming the field; ``to_json()`` /
``from_json()`` keep durations in seconds (``soak_s``, ``action_deadline_s``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any

from posfleet.contract import MaintenanceWindow
from posfleet.firmware.errors import FirmwareError

# ---------------------------------------------------------------------------- errors


class RolloutError(FirmwareError):
    """Base of every rollout error."""


class RolloutPolicyError(RolloutError, ValueError):
    """A target filter, wave spec or policy that cannot work; the message says why.

    ``field`` names the offending setting (``waves[2].percent``, ``offers_per_minute``).
    """

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


# ------------------------------------------------------------------------------ waves


class ErrorAction(StrEnum):
    """What a wave's error threshold does when it is crossed."""

    PAUSE = "pause"
    ABORT = "abort"


def _fraction(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise RolloutPolicyError(f"{where} must be a number between 0 and 1", field=where)
    if not 0.0 <= float(value) <= 1.0:
        raise RolloutPolicyError(
            f"{where} is {value}; it is a share between 0 and 1 (0.95 is 95 %)", field=where
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class WaveSpec:
    """One wave: its size and the thresholds that end it.

    Exactly one of ``percent`` (the share of the eligible fleet updated **once this wave
    is done**, cumulative: 1, 10, 50, 100) or ``count`` (how many terminals this wave
    adds) is given. ``success_threshold``: the share of the wave that must succeed before
    the next wave may start. ``error_threshold``: once more than this share of the wave
    has failed (failed, rolled back, rejected, timed out), the rollout pauses (or aborts,
    ``on_error="abort"``) at once. ``soak``: how long the wave's terminals run the new
    firmware, after its last Action ended, before the health gate and the next wave.
    """

    percent: float | None = None
    count: int | None = None
    success_threshold: float = 0.95
    error_threshold: float = 0.10
    soak: timedelta = timedelta(minutes=30)
    on_error: ErrorAction = ErrorAction.PAUSE

    def __post_init__(self) -> None:
        if (self.percent is None) == (self.count is None):
            raise RolloutPolicyError(
                "a wave needs either a percent of the fleet or a count of terminals, not "
                f"{'both' if self.percent is not None else 'neither'}",
                field="percent",
            )
        if self.percent is not None:
            p = self.percent
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 100:
                raise RolloutPolicyError(
                    f"a wave's percent is {p!r}; it must be above 0 and at most 100",
                    field="percent",
                )
            object.__setattr__(self, "percent", float(p))
        if self.count is not None and (
            isinstance(self.count, bool) or not isinstance(self.count, int) or self.count < 1
        ):
            raise RolloutPolicyError(
                f"a wave's count is {self.count!r}; it must be a whole number of at least 1",
                field="count",
            )
        object.__setattr__(
            self, "success_threshold", _fraction(self.success_threshold, "success_threshold")
        )
        object.__setattr__(
            self, "error_threshold", _fraction(self.error_threshold, "error_threshold")
        )
        if not isinstance(self.soak, timedelta) or self.soak < timedelta(0):
            raise RolloutPolicyError("a wave's soak time cannot be negative", field="soak")
        if self.soak > timedelta(days=14):
            raise RolloutPolicyError("a wave's soak time is at most 14 days", field="soak")
        object.__setattr__(self, "on_error", ErrorAction(self.on_error))

    def describe(self) -> str:
        """``10 %`` or ``25 terminals``."""
        if self.percent is not None:
            return f"{self.percent:g} %"
        return f"{self.count} terminal{'s' if self.count != 1 else ''}"

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (the soak in seconds)."""
        return {
            "percent": self.percent,
            "count": self.count,
            "success_threshold": self.success_threshold,
            "error_threshold": self.error_threshold,
            "soak_s": self.soak.total_seconds(),
            "on_error": str(self.on_error),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WaveSpec:
        """Read :meth:`to_json`'s output back (``soak_s`` in seconds)."""
        if not isinstance(data, Mapping):
            raise RolloutPolicyError("a wave must be a JSON object", field="waves")
        known = {"percent", "count", "success_threshold", "error_threshold", "soak_s", "on_error"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise RolloutPolicyError(f"unknown wave field(s) {', '.join(unknown)}", field="waves")
        soak = data.get("soak_s", 1800)
        if isinstance(soak, bool) or not isinstance(soak, int | float):
            raise RolloutPolicyError("a wave's soak_s must be a number of seconds", field="soak")
        try:
            on_error = ErrorAction(data.get("on_error", "pause"))
        except ValueError:
            raise RolloutPolicyError(
                "a wave's on_error is pause or abort", field="on_error"
            ) from None
        return cls(
            percent=data.get("percent"),
            count=data.get("count"),
            success_threshold=data.get("success_threshold", 0.95),
            error_threshold=data.get("error_threshold", 0.10),
            soak=timedelta(seconds=soak),
            on_error=on_error,
        )


DEFAULT_WAVES: tuple[WaveSpec, ...] = (
    WaveSpec(percent=1.0),
    WaveSpec(percent=10.0),
    WaveSpec(percent=50.0),
    WaveSpec(percent=100.0),
)
"""1 % canary, 10 %, 50 %, 100 %, each with a 95 % success and 10 % error threshold."""


@dataclass(frozen=True, slots=True)
class GateTolerances:
    """How much worse the updated terminals may do than before the update.

    The reader error rate and the decline rate may rise by at most this many
    **percentage points** (1.2 % -> 3.0 % is +1.8 points); reboots per terminal (in the
    soak window, not counting the update's own) by at most ``reboots_per_terminal``.
    The gate needs at least ``min_terminals`` updated terminals with figures to judge.
    """

    reader_error_rate_points: float = 2.0
    decline_rate_points: float = 2.0
    reboots_per_terminal: float = 0.5
    min_terminals: int = 1

    def __post_init__(self) -> None:
        for name in ("reader_error_rate_points", "decline_rate_points", "reboots_per_terminal"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not (0 <= value <= 100)
            ):
                raise RolloutPolicyError(
                    f"gate tolerance {name} must be between 0 and 100", field=f"gate.{name}"
                )
            object.__setattr__(self, name, float(value))
        if (
            isinstance(self.min_terminals, bool)
            or not isinstance(self.min_terminals, int)
            or (self.min_terminals < 0)
        ):
            raise RolloutPolicyError(
                "gate min_terminals must be a whole number, 0 or more", field="gate.min_terminals"
            )

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "reader_error_rate_points": self.reader_error_rate_points,
            "decline_rate_points": self.decline_rate_points,
            "reboots_per_terminal": self.reboots_per_terminal,
            "min_terminals": self.min_terminals,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> GateTolerances:
        """Read :meth:`to_json`'s output back; missing keys take the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise RolloutPolicyError("the gate must be a JSON object", field="gate")
        unknown = sorted(set(data) - set(cls().to_json()))
        if unknown:
            raise RolloutPolicyError(f"unknown gate field(s) {', '.join(unknown)}", field="gate")
        return cls(**dict(data))


def _minutes(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _duration(span: timedelta) -> str:
    """``3 days``, ``6 days 21 h``, ``6 h 30 min``, ``45 min``, ``20 s``."""
    days, rest = divmod(int(span.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{days} day{'s' if days != 1 else ''}" if days else "",
        f"{hours} h" if hours else "",
        f"{minutes} min" if minutes and not days else "",
        f"{seconds} s" if seconds and not (days or hours) else "",
    ]
    return " ".join(p for p in parts if p) or "0 s"


_MIN_DEADLINE = timedelta(seconds=5)
_MAX_DEADLINE = timedelta(days=30)


@dataclass(frozen=True, slots=True)
class RolloutPolicy:
    """How a rollout proceeds: its waves, pace, window, deadlines and approval rule.

    - ``waves``: at least one; percentages must grow from wave to wave and the last wave
      must be ``100 %`` so every eligible terminal is covered.
    - ``offers_per_minute`` (1..10000) caps how fast Actions are offered; each offer's
      download may start up to ``jitter_s`` seconds later (random, per offer).
    - ``window``: the maintenance window, local time in **each terminal's own** zone.
    - ``action_deadline``: every Action ends by then (5 s .. 30 days); nothing stays in
      progress forever.
    - ``max_offline``: terminals not seen for longer are excluded (``offline_too_long``).
    - ``require_second_approver``: a start needs the approval of someone other than the
      rollout's creator.
    - ``gate``: the business-health tolerances.
    """

    waves: tuple[WaveSpec, ...] = DEFAULT_WAVES
    offers_per_minute: int = 60
    jitter_s: float = 30.0
    window: MaintenanceWindow = field(default_factory=MaintenanceWindow)
    action_deadline: timedelta = timedelta(days=3)
    max_offline: timedelta = timedelta(days=7)
    require_second_approver: bool = False
    gate: GateTolerances = field(default_factory=GateTolerances)

    def __post_init__(self) -> None:
        waves = tuple(self.waves)
        object.__setattr__(self, "waves", waves)
        if not waves:
            raise RolloutPolicyError("a rollout needs at least one wave", field="waves")
        if len(waves) > 20:
            raise RolloutPolicyError("a rollout has at most 20 waves", field="waves")
        last_percent = 0.0
        for index, spec in enumerate(waves):
            if not isinstance(spec, WaveSpec):
                raise RolloutPolicyError(
                    f"wave {index + 1} is not a wave spec", field=f"waves[{index}]"
                )
            if spec.percent is not None:
                if spec.percent <= last_percent:
                    raise RolloutPolicyError(
                        f"wave {index + 1} is {spec.percent:g} %, not more than the "
                        f"{last_percent:g} % before it; percentages count the fleet "
                        "updated so far (1, 10, 50, 100)",
                        field=f"waves[{index}].percent",
                    )
                last_percent = spec.percent
        if waves[-1].percent != 100.0:
            raise RolloutPolicyError(
                f"the last wave is {waves[-1].describe()}; it must be 100 % so every "
                "eligible terminal is updated",
                field=f"waves[{len(waves) - 1}]",
            )
        opm = self.offers_per_minute
        if isinstance(opm, bool) or not isinstance(opm, int) or not 1 <= opm <= 10_000:
            raise RolloutPolicyError(
                f"offers_per_minute is {opm!r}; it must be a whole number from 1 to 10000",
                field="offers_per_minute",
            )
        jitter = self.jitter_s
        if (
            isinstance(jitter, bool)
            or not isinstance(jitter, int | float)
            or not (0 <= jitter <= 3600)
        ):
            raise RolloutPolicyError("jitter_s must be from 0 to 3600 seconds", field="jitter_s")
        object.__setattr__(self, "jitter_s", float(jitter))
        if not isinstance(self.window, MaintenanceWindow):
            raise RolloutPolicyError("window must be a maintenance window", field="window")
        if not self.window.weekdays:
            raise RolloutPolicyError("the maintenance window opens on no weekday", field="window")
        if not _MIN_DEADLINE <= self.action_deadline <= _MAX_DEADLINE:
            raise RolloutPolicyError(
                "action_deadline must be from 5 seconds to 30 days", field="action_deadline"
            )
        if self.max_offline <= timedelta(0):
            raise RolloutPolicyError("max_offline must be positive", field="max_offline")
        if not isinstance(self.gate, GateTolerances):
            raise RolloutPolicyError("gate must be gate tolerances", field="gate")

    def longest_wait(self) -> timedelta:
        """The longest a terminal may wait for its window: from just after one opening
        closes to the next opening (local days; a DST change moves it by an hour)."""
        start = _minutes(self.window.start)
        end = _minutes(self.window.end)
        length = (end - start) % (24 * 60) or 24 * 60
        days = sorted(set(self.window.weekdays))
        gaps = [(b - a) % 7 or 7 for a, b in zip(days, days[1:] + days[:1], strict=True)]
        wait = timedelta(days=max(gaps)) - timedelta(minutes=length)
        return max(wait, timedelta(0))

    def warnings(self) -> tuple[str, ...]:
        """Settings that work but will likely surprise: said before the rollout starts."""
        found: list[str] = []
        wait = self.longest_wait()
        if wait >= self.action_deadline:
            found.append(
                f"the maintenance window can be {_duration(wait)} away, longer than the "
                f"Action deadline of {_duration(self.action_deadline)}: terminals offered "
                "just after their window closed will time out; open the window on more "
                "days or allow a longer deadline"
            )
        if len(self.waves) == 1:
            found.append("a single wave updates every terminal at once, without a canary")
        if all(w.soak == timedelta(0) for w in self.waves[:-1]) and len(self.waves) > 1:
            found.append(
                "no wave soaks before the next: the health gate sees no figures after the update"
            )
        return tuple(found)

    @property
    def offer_interval(self) -> timedelta:
        """The time between two offers at ``offers_per_minute``."""
        return timedelta(minutes=1) / self.offers_per_minute

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (durations in seconds)."""
        return {
            "waves": [w.to_json() for w in self.waves],
            "offers_per_minute": self.offers_per_minute,
            "jitter_s": self.jitter_s,
            "window": self.window.model_dump(mode="json"),
            "action_deadline_s": self.action_deadline.total_seconds(),
            "max_offline_s": self.max_offline.total_seconds(),
            "require_second_approver": self.require_second_approver,
            "gate": self.gate.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> RolloutPolicy:
        """Read :meth:`to_json`'s output back; missing keys take the defaults."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise RolloutPolicyError("a rollout policy must be a JSON object", field="policy")
        known = set(cls().to_json())
        unknown = sorted(set(data) - known)
        if unknown:
            raise RolloutPolicyError(
                f"unknown policy field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}",
                field="policy",
            )
        kwargs: dict[str, Any] = {}
        if "waves" in data:
            if not isinstance(data["waves"], list | tuple):
                raise RolloutPolicyError("waves must be a list", field="waves")
            kwargs["waves"] = tuple(WaveSpec.from_json(w) for w in data["waves"])
        for name in ("offers_per_minute", "jitter_s", "require_second_approver"):
            if name in data:
                kwargs[name] = data[name]
        if "window" in data:
            try:
                kwargs["window"] = MaintenanceWindow.model_validate(data["window"])
            except ValueError as exc:
                raise RolloutPolicyError(
                    f"window is not a maintenance window: {exc}", field="window"
                ) from None
        for name in ("action_deadline", "max_offline"):
            if f"{name}_s" in data:
                seconds = data[f"{name}_s"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float):
                    raise RolloutPolicyError(f"{name}_s must be a number of seconds", field=name)
                kwargs[name] = timedelta(seconds=seconds)
        if "gate" in data:
            kwargs["gate"] = GateTolerances.from_json(data["gate"])
        return cls(**kwargs)
