"""Rollouts as the store keeps them: the records and their errors; pure data.

The commands (create, preview, approve, start, pause, resume, abort, roll back) are in
:mod:`posfleet.firmware.rollouts`, the queries in :mod:`posfleet.firmware.rollout_queries`
and the background work in :mod:`posfleet.firmware.rollout_runner`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from posfleet.firmware.rollout_machine import RolloutTransitionError, allowed_commands
from posfleet.firmware.rollout_model import (
    GateVerdict,
    PreviewRow,
    RolloutError,
    RolloutPolicy,
    RolloutState,
    TargetFilter,
    WaveSpec,
    WaveState,
)
from posfleet.firmware.rollout_planner import WaveEstimate

# ----------------------------------------------------------------------------- errors


class RolloutNotFoundError(RolloutError):
    """No rollout has this id (the API answers 404)."""

    def __init__(self, rollout_id: int) -> None:
        super().__init__(f"no rollout #{rollout_id}")
        self.rollout_id = rollout_id


class RolloutPermissionError(RolloutError):
    """The actor may not do this: too low a role, or the four-eyes rule (the API: 403).

    ``command`` names what was refused; the refusal is audited
    (:func:`posfleet.firmware.rollouts.run_command` does it in a transaction of its own).
    """

    def __init__(self, message: str, *, command: str, rollout_id: int | None) -> None:
        super().__init__(message)
        self.command = command
        self.rollout_id = rollout_id


class RolloutConflictError(RolloutTransitionError):
    """A command that cannot be carried out as things stand (the API: 409).

    Nothing to start (no eligible terminal), no artifact to roll back to, or another
    writer moved the rollout meanwhile.
    """


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class TransitionRecord:
    """One stored transition: who moved the rollout from where to where, when and why."""

    id: int
    ts: datetime
    command: str
    from_state: RolloutState | None
    to_state: RolloutState
    actor: str
    reason_code: str
    reason_text: str

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "id": self.id,
            "ts": self.ts.isoformat(),
            "command": self.command,
            "from_state": None if self.from_state is None else str(self.from_state),
            "to_state": str(self.to_state),
            "actor": self.actor,
            "reason_code": self.reason_code,
            "reason_text": self.reason_text,
        }


@dataclass(frozen=True, slots=True)
class WaveCounts:
    """How a wave's (or the rollout's) terminals stand, from their Actions."""

    terminals: int = 0
    succeeded: int = 0
    failed: int = 0
    in_progress: int = 0
    joined_late: int = 0

    @property
    def not_offered(self) -> int:
        """Terminals with no Action yet."""
        return self.terminals - self.succeeded - self.failed - self.in_progress

    def to_json(self) -> dict[str, int]:
        """Plain JSON, ``not_offered`` included."""
        return {
            "terminals": self.terminals,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "in_progress": self.in_progress,
            "not_offered": self.not_offered,
            "joined_late": self.joined_late,
        }


@dataclass(frozen=True, slots=True)
class WaveRecord:
    """One wave (hawkBit's RolloutGroup): its spec, state, counts and gate verdict."""

    wave: int
    state: WaveState
    spec: WaveSpec
    planned: int
    counts: WaveCounts
    started_at: datetime | None
    soak_until: datetime | None
    finished_at: datetime | None
    gate: GateVerdict | None
    gate_detail: dict[str, Any]
    """The stored gate JSON: the verdict plus ``without_figures`` and ``incident_id``."""
    reason: str
    accepted_by: str | None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return {
            "wave": self.wave,
            "state": str(self.state),
            "spec": self.spec.to_json(),
            "planned": self.planned,
            "counts": self.counts.to_json(),
            "started_at": _iso(self.started_at),
            "soak_until": _iso(self.soak_until),
            "finished_at": _iso(self.finished_at),
            "gate": self.gate_detail or None,
            "reason": self.reason,
            "accepted_by": self.accepted_by,
        }


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """One rollout as the API, the CLI and the page show it."""

    id: int
    name: str
    artifact_id: int
    artifact: str
    """``name@version`` of the image rolled out."""
    version: str
    rollback_artifact_id: int | None
    rollback_artifact: str | None
    state: RolloutState
    target: TargetFilter
    policy: RolloutPolicy
    current_wave: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    approved_by: str | None
    approved_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    reason_code: str
    reason_text: str
    lease_owner: str | None
    lease_until: datetime | None
    paused_reason: str | None
    incident_id: int | None
    waves: tuple[WaveRecord, ...] = ()
    totals: WaveCounts = WaveCounts()
    excluded: dict[str, int] = field(default_factory=dict)
    """Terminals of the target set without an Action, by reason (after the start)."""
    transitions: tuple[TransitionRecord, ...] = ()

    @property
    def allowed_commands(self) -> tuple[str, ...]:
        """The staff commands the state allows now (for buttons; roles are checked on use).

        ``finish`` is the runner's own and never listed."""
        return tuple(c for c in allowed_commands(self.state) if c != "finish")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON, waves and transitions included."""
        return {
            "id": self.id,
            "name": self.name,
            "artifact_id": self.artifact_id,
            "artifact": self.artifact,
            "version": self.version,
            "rollback_artifact_id": self.rollback_artifact_id,
            "rollback_artifact": self.rollback_artifact,
            "state": str(self.state),
            "target": self.target.to_json(),
            "target_text": self.target.describe(),
            "policy": self.policy.to_json(),
            "current_wave": self.current_wave,
            "created_by": self.created_by,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "approved_by": self.approved_by,
            "approved_at": _iso(self.approved_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "reason_code": self.reason_code,
            "reason_text": self.reason_text,
            "lease_owner": self.lease_owner,
            "lease_until": _iso(self.lease_until),
            "paused_reason": self.paused_reason,
            "incident_id": self.incident_id,
            "allowed_commands": list(self.allowed_commands),
            "waves": [w.to_json() for w in self.waves],
            "totals": self.totals.to_json(),
            "excluded": dict(self.excluded),
            "transitions": [t.to_json() for t in self.transitions],
        }


@dataclass(frozen=True, slots=True)
class RolloutPreview:
    """The dry run: each planned terminal's wave and rough times, and who is left out."""

    rows: list[PreviewRow]
    excluded: list[tuple[str, str]]
    """(terminal id, reason) of every terminal of the target set that gets no Action."""
    waves: list[WaveEstimate]
    warnings: tuple[str, ...] = ()
    """Settings that work but will likely surprise (the policy's warnings)."""

    def exclusion_counts(self) -> dict[str, int]:
        """How many terminals each reason excludes."""
        counts: dict[str, int] = {}
        for _, reason in self.excluded:
            counts[reason] = counts.get(reason, 0) + 1
        return counts

    def to_json(self, *, limit: int | None = None) -> dict[str, Any]:
        """Plain JSON; ``limit`` caps the rows and exclusions listed (not the counts)."""
        rows = self.rows if limit is None else self.rows[:limit]
        excluded = self.excluded if limit is None else self.excluded[:limit]
        return {
            "terminals": len(self.rows),
            "waves": [
                {
                    "wave": w.wave,
                    "terminals": w.terminals,
                    "sites": w.sites,
                    "first_offer": _iso(w.first_offer),
                    "last_offer": _iso(w.last_offer),
                    "last_install": _iso(w.last_install),
                    "late": w.late,
                }
                for w in self.waves
            ],
            "rows": [
                {
                    "terminal_id": r.terminal_id,
                    "wave": r.wave,
                    "site_id": r.site_id,
                    "earliest_offer": r.earliest_offer.isoformat(),
                    "earliest_install": _iso(r.earliest_install),
                }
                for r in rows
            ],
            "excluded": [{"terminal_id": t, "reason": r} for t, r in excluded],
            "excluded_counts": self.exclusion_counts(),
            "warnings": list(self.warnings),
        }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
