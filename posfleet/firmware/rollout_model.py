"""The vocabulary of rollouts: states, target filters, wave specs, policies, plans, figures.

Pure data with validation, no I/O. A **rollout** updates a target set of terminals to one
artifact wave by wave (hawkBit's RolloutGroup is our *wave*); each terminal's update is an
ordinary Action. :mod:`posfleet.firmware.rollout_planner` turns candidates into a
:class:`Plan`, :mod:`posfleet.firmware.rollout_machine` holds the state machine and the
per-wave decisions, :mod:`posfleet.firmware.rollout_gate` the business-health verdict.

Every enum is a :class:`~enum.StrEnum` stored by its value. Every dataclass is frozen and
checks itself when built, raising :class:`RolloutPolicyError` (a :class:`ValueError`)
with a sentence an operator understands. ``to_json()`` gives plain JSON types (for the
store's JSON columns and the API), ``from_json()`` reads them back and validates.
Wave specs, gate tolerances and the policy are defined in
:mod:`posfleet.firmware.rollout_policy` and re-exported here: import them from this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from posfleet.firmware.rollout_policy import (
    DEFAULT_WAVES,
    ErrorAction,
    GateTolerances,
    RolloutError,
    RolloutPolicy,
    RolloutPolicyError,
    WaveSpec,
)
from posfleet.firmware.versions import FirmwareVersion

__all__ = [
    "DEFAULT_WAVES",
    "Candidate",
    "ErrorAction",
    "Exclusion",
    "GateTolerances",
    "GateVerdict",
    "HealthFigures",
    "Plan",
    "PreviewRow",
    "ReasonCode",
    "RolloutError",
    "RolloutPolicy",
    "RolloutPolicyError",
    "RolloutState",
    "TargetFilter",
    "WaveProgress",
    "WaveSpec",
    "WaveState",
]

# ----------------------------------------------------------------------------- enums


class RolloutState(StrEnum):
    """Where a rollout stands; stored by name.

    ``draft -> previewed -> awaiting_approval -> running <-> paused -> finished``, and
    ``aborted`` / ``rolled_back`` from where :mod:`posfleet.firmware.rollout_machine`
    allows them.
    """

    DRAFT = "draft"
    PREVIEWED = "previewed"
    AWAITING_APPROVAL = "awaiting_approval"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    ABORTED = "aborted"
    ROLLED_BACK = "rolled_back"

    @property
    def final(self) -> bool:
        """True once the rollout offers nothing new any more (rolling back may follow)."""
        return self in (RolloutState.FINISHED, RolloutState.ABORTED, RolloutState.ROLLED_BACK)

    @property
    def active(self) -> bool:
        """True while the runner works on it (running) or holds it (paused)."""
        return self in (RolloutState.RUNNING, RolloutState.PAUSED)


class WaveState(StrEnum):
    """Where one wave (RolloutGroup) stands; stored by name."""

    PENDING = "pending"
    """Not started: no Action created for it yet."""
    RUNNING = "running"
    """Its Actions are being offered or are under way."""
    SOAKING = "soaking"
    """Every Action is final and the success threshold is met; waiting out the soak time."""
    PASSED = "passed"
    """Soaked (and the health gate passed): the next wave may start."""
    FAILED = "failed"
    """A threshold or the health gate stopped the rollout at this wave."""

    @property
    def accepts_joiners(self) -> bool:
        """True while a terminal that starts matching can still join this wave (it is not
        done offering); otherwise it joins the next (``assign_joiner``'s ``current_wave_open``)."""
        return self in (WaveState.PENDING, WaveState.RUNNING)


class ReasonCode(StrEnum):
    """Why staff did something to a rollout; every command takes one (and free text)."""

    SECURITY_FIX = "security_fix"
    BUG_FIX = "bug_fix"
    FEATURE = "feature"
    ROLLBACK = "rollback"
    OTHER = "other"


class Exclusion(StrEnum):
    """Why a terminal that matches the target filter gets no Action (the agent's words)."""

    WRONG_MODEL = "wrong_model"
    """The manifest does not list its model."""
    NO_INVENTORY = "no_inventory"
    """It has not reported its model or firmware version yet."""
    UNKNOWN_VERSION = "unknown_version"
    """It runs a firmware version that cannot be compared."""
    ALREADY_CURRENT = "already_current"
    """It already runs the rollout's version."""
    BELOW_MIN_VERSION = "below_min_version"
    """It runs a version older than the manifest's ``min_version``."""
    DOWNGRADE = "downgrade"
    """It runs a newer version and the manifest does not allow a downgrade."""
    OFFLINE_TOO_LONG = "offline_too_long"
    """It has not been seen for longer than the policy's ``max_offline``."""
    BUSY = "busy"
    """It has an open Action already (at most one per terminal)."""


# ------------------------------------------------------------------------- candidates


@dataclass(frozen=True, slots=True)
class Candidate:
    """What the registry knows of one terminal that planning needs.

    ``model`` and ``firmware_version`` are None until the terminal reported its
    inventory; ``timezone`` is its IANA zone (an unknown zone is read as UTC for the
    preview's estimate, the agent has the final word); ``last_seen`` is when it was last
    heard from (None: never).
    """

    terminal_id: str
    model: str | None
    merchant_id: str | None
    site_id: str | None
    tags: tuple[str, ...]
    firmware_version: str | None
    timezone: str
    online: bool
    last_seen: datetime | None
    has_open_action: bool

    @property
    def spread_key(self) -> str:
        """The shop this terminal belongs to, for spreading waves (its own id if none)."""
        return self.site_id if self.site_id else f"terminal:{self.terminal_id}"


def _names(value: Any, where: str) -> tuple[str, ...]:
    """A sorted tuple of distinct, non-empty names (from a list, tuple or one string)."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple | set | frozenset):
        raise RolloutPolicyError(f"{where} must be a list of names", field=where)
    names: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise RolloutPolicyError(f"{where} holds {item!r}, not a name", field=where)
        if len(item) > 128:
            raise RolloutPolicyError(
                f"{where} holds a name longer than 128 characters", field=where
            )
        names.add(item.strip())
    return tuple(sorted(names))


_FILTER_FIELDS = ("models", "merchant_ids", "site_ids", "tags", "firmware_versions")


@dataclass(frozen=True)
class TargetFilter:
    """Which terminals a rollout is for: every given criterion must hold.

    An empty criterion matches everything; within one criterion any listed value matches
    (``models=("V400m", "P630")`` is either model, ``tags=("pilot", "berlin")`` is a
    terminal with at least one of the tags). ``firmware_versions`` compares by version
    precedence, so ``5.2`` matches a terminal reporting ``5.2.0``. The empty filter is
    the whole fleet.
    """

    models: tuple[str, ...] = ()
    merchant_ids: tuple[str, ...] = ()
    site_ids: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    firmware_versions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _FILTER_FIELDS:
            object.__setattr__(self, name, _names(getattr(self, name), name))
        # Sets for the lookups, and a memo of the verdict per reported version string: a
        # fleet reports a handful of versions, so each is parsed once, not per terminal.
        object.__setattr__(
            self, "_sets", tuple(frozenset(getattr(self, n)) for n in _FILTER_FIELDS[:4])
        )
        object.__setattr__(
            self, "_versions", frozenset(FirmwareVersion(v) for v in self.firmware_versions)
        )
        object.__setattr__(self, "_version_memo", {})

    def _version_matches(self, text: str | None) -> bool:
        memo: dict[str | None, bool] = self.__dict__["_version_memo"]
        hit = memo.get(text)
        if hit is None:
            hit = (
                bool(text and text.strip())
                and FirmwareVersion(str(text)) in self.__dict__["_versions"]
            )
            if len(memo) < 10_000:
                memo[text] = hit
        return hit

    def matches(self, c: Candidate) -> bool:
        """True if terminal ``c`` is in this rollout's target set."""
        models, merchants, sites, tags = self.__dict__["_sets"]
        if models and c.model not in models:
            return False
        if merchants and c.merchant_id not in merchants:
            return False
        if sites and c.site_id not in sites:
            return False
        if tags and tags.isdisjoint(c.tags):
            return False
        return not self.firmware_versions or self._version_matches(c.firmware_version)

    @property
    def everything(self) -> bool:
        """True for the empty filter (the whole fleet)."""
        return not any(getattr(self, name) for name in _FILTER_FIELDS)

    def describe(self) -> str:
        """``models V400m, P630; tags pilot`` style text; ``the whole fleet`` if empty."""
        parts = [
            f"{name.replace('_ids', 's').replace('_', ' ')} {', '.join(getattr(self, name))}"
            for name in _FILTER_FIELDS
            if getattr(self, name)
        ]
        return "; ".join(parts) or "the whole fleet"

    def to_json(self) -> dict[str, list[str]]:
        """The filter as a JSON object of lists (every key present)."""
        return {name: list(getattr(self, name)) for name in _FILTER_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> TargetFilter:
        """Read :meth:`to_json`'s output back; unknown keys are an error, missing ones empty."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise RolloutPolicyError("a target filter must be a JSON object", field="target")
        unknown = sorted(set(data) - set(_FILTER_FIELDS))
        if unknown:
            raise RolloutPolicyError(
                f"unknown target filter field(s) {', '.join(unknown)}; "
                f"known: {', '.join(_FILTER_FIELDS)}",
                field="target",
            )
        return cls(**{name: _names(data.get(name), name) for name in _FILTER_FIELDS})


# ------------------------------------------------------------------------------ plans


@dataclass(frozen=True)
class Plan:
    """Which terminal is in which wave, and which are excluded and why.

    ``waves[i]`` holds the terminal ids of wave ``i`` (one per policy wave; a wave is
    empty only when the fleet has fewer eligible terminals than the policy has waves).
    ``excluded`` pairs a terminal id with an :class:`Exclusion` value.
    """

    waves: tuple[tuple[str, ...], ...]
    excluded: tuple[tuple[str, str], ...] = ()

    @property
    def total(self) -> int:
        """How many terminals the plan updates."""
        return sum(len(w) for w in self.waves)

    def wave_of(self, terminal_id: str) -> int | None:
        """The wave index of ``terminal_id``, None if it is not planned."""
        index: dict[str, int] | None = self.__dict__.get("_index")
        if index is None:
            index = {tid: i for i, wave in enumerate(self.waves) for tid in wave}
            object.__setattr__(self, "_index", index)
        return index.get(terminal_id)

    def exclusion_counts(self) -> dict[str, int]:
        """How many terminals each reason excludes."""
        counts: dict[str, int] = {}
        for _, reason in self.excluded:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "waves": [list(w) for w in self.waves],
            "excluded": [[tid, reason] for tid, reason in self.excluded],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Read :meth:`to_json`'s output back."""
        return cls(
            waves=tuple(tuple(str(t) for t in w) for w in data["waves"]),
            excluded=tuple((str(t), str(r)) for t, r in data.get("excluded", ())),
        )


@dataclass(frozen=True, slots=True)
class PreviewRow:
    """One planned terminal in the dry-run preview: its wave and roughly when.

    ``earliest_offer`` is the earliest its Action can be offered (the earlier waves'
    windows, soak times and the rate limit before it); ``earliest_install`` the first
    opening of its maintenance window (its own zone) at or after that offer.
    """

    terminal_id: str
    wave: int
    site_id: str | None
    earliest_offer: datetime
    earliest_install: datetime | None = None


@dataclass(frozen=True, slots=True)
class WaveProgress:
    """How one running wave stands, from its stored Actions.

    ``total`` counts the wave's terminals (late joiners included); ``failed`` every final
    Action that did not succeed (failed, rolled back, rejected, timed out, cancelled);
    ``in_progress`` those offered and not final. ``total - succeeded - failed -
    in_progress`` are not offered yet. ``all_final_at`` is when the last Action became
    final, None while any is open or not offered.
    """

    wave: int
    total: int
    succeeded: int
    failed: int
    in_progress: int
    started_at: datetime
    all_final_at: datetime | None = None

    def __post_init__(self) -> None:
        for name in ("wave", "total", "succeeded", "failed", "in_progress"):
            if getattr(self, name) < 0:
                raise RolloutPolicyError(f"wave progress {name} cannot be negative", field=name)
        if self.succeeded + self.failed + self.in_progress > self.total:
            raise RolloutPolicyError(
                f"wave {self.wave + 1} counts {self.succeeded} succeeded, {self.failed} failed "
                f"and {self.in_progress} in progress, more than its {self.total} terminals",
                field="total",
            )

    @property
    def final(self) -> int:
        """How many Actions have ended."""
        return self.succeeded + self.failed

    @property
    def not_offered(self) -> int:
        """How many terminals have no Action yet."""
        return self.total - self.final - self.in_progress


# ---------------------------------------------------------------------- health figures


@dataclass(frozen=True, slots=True)
class HealthFigures:
    """Business-health counts of a set of terminals over one time span.

    ``reads``/``read_errors`` are card reads and failed ones, ``approved``/``declined``
    payment outcomes, ``reboots`` restarts not caused by the update itself.
    """

    terminals: int
    reads: int
    read_errors: int
    approved: int
    declined: int
    reboots: int

    def __post_init__(self) -> None:
        for name in ("terminals", "reads", "read_errors", "approved", "declined", "reboots"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise RolloutPolicyError(
                    f"health figure {name} must be a count, 0 or more", field=name
                )
        if self.read_errors > self.reads:
            raise RolloutPolicyError("more read errors than card reads", field="read_errors")

    @property
    def reader_error_rate(self) -> float:
        """Failed card reads per card read (0.0 with no reads)."""
        return self.read_errors / self.reads if self.reads else 0.0

    @property
    def decline_rate(self) -> float:
        """Declined payments per payment (0.0 with no payments)."""
        payments = self.approved + self.declined
        return self.declined / payments if payments else 0.0

    @property
    def reboots_per_terminal(self) -> float:
        """Reboots per terminal (0.0 with no terminals)."""
        return self.reboots / self.terminals if self.terminals else 0.0

    def to_json(self) -> dict[str, Any]:
        """Counts and the derived rates."""
        return {
            "terminals": self.terminals,
            "reads": self.reads,
            "read_errors": self.read_errors,
            "approved": self.approved,
            "declined": self.declined,
            "reboots": self.reboots,
            "reader_error_rate": self.reader_error_rate,
            "decline_rate": self.decline_rate,
            "reboots_per_terminal": self.reboots_per_terminal,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HealthFigures:
        """Read the counts of :meth:`to_json`'s output back (rates are recomputed)."""
        names = ("terminals", "reads", "read_errors", "approved", "declined", "reboots")
        return cls(**{name: data[name] for name in names})


@dataclass(frozen=True, slots=True)
class GateVerdict:
    """The business-health gate's answer for one wave.

    ``reasons`` holds one sentence per regression (or why the gate could not judge),
    naming the figures: ``card-reader errors 1.2 % -> 9.8 % (+8.6 points, tolerance 2.0)``.
    """

    passed: bool
    reasons: tuple[str, ...]
    before: HealthFigures
    after: HealthFigures

    def summary(self) -> str:
        """One line: ``passed`` or the reasons joined."""
        return "passed" if self.passed else "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (for the wave's ``gate`` column and the fleet incident)."""
        return {
            "passed": self.passed,
            "reasons": list(self.reasons),
            "before": self.before.to_json(),
            "after": self.after.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GateVerdict:
        """Read :meth:`to_json`'s output back."""
        return cls(
            passed=bool(data["passed"]),
            reasons=tuple(str(r) for r in data["reasons"]),
            before=HealthFigures.from_json(data["before"]),
            after=HealthFigures.from_json(data["after"]),
        )
