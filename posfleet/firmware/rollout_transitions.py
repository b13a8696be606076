"""Rules every rollout command follows: roles, reason codes, the four-eyes rule, the
stored and audited transition, and which artifact a roll back may offer.

Used by the staff commands (:mod:`posfleet.firmware.rollouts`) and the runner
(:mod:`posfleet.firmware.rollout_runner`), which moves rollouts by itself (pause on a
threshold or a failed health gate, finish) through the same :func:`record_transition`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.firmware.action_states import ActionState
from posfleet.firmware.actions import cancel_action
from posfleet.firmware.artifacts import ArtifactRecord, find_artifact, list_artifacts
from posfleet.firmware.rollout_machine import transition
from posfleet.firmware.rollout_model import ReasonCode, RolloutPolicyError, RolloutState
from posfleet.firmware.rollout_records import (
    RolloutConflictError,
    RolloutPermissionError,
    RolloutRecord,
)
from posfleet.firmware.versions import FirmwareVersion
from posfleet.store.accounts import Role, record_audit
from posfleet.store.schema import firmware_actions, rollout_targets, rollout_transitions, rollouts

REQUIRED_ROLE: dict[str, Role] = {
    "create": Role.OPS,
    "request_approval": Role.OPS,
    "approve": Role.OPS,
    "start": Role.OPS,
    "pause": Role.SUPPORT,
    "resume": Role.OPS,
    "abort": Role.OPS,
    "rollback": Role.OPS,
}
"""The least role each command needs."""

FOUR_EYES = frozenset({"resume", "rollback"})
"""Commands the creator may not give when the policy asks for a second approver."""

CANCELLED_ON_ABORT = frozenset(
    {
        ActionState.CREATED,
        ActionState.OFFERED,
        ActionState.RETRYING,
        ActionState.ACCEPTED,
        ActionState.WAITING_WINDOW,
        ActionState.DOWNLOADING,
        ActionState.VERIFYING,
    }
)
"""Actions an abort or a roll back cancels: those not installing yet (an install under
way cannot be stopped from here; what it reports is still recorded)."""

MAX_REASON_TEXT = 2000


def seed_of(rollout_id: int) -> str:
    """The seed of a rollout's plan: the same fleet gives the same waves every time."""
    return f"rollout-{rollout_id}"


def check_reason(reason_code: str, reason_text: str) -> tuple[str, str]:
    """The reason code's stored name and the trimmed text; RolloutPolicyError if bad."""
    try:
        code = ReasonCode(reason_code)
    except ValueError:
        known = ", ".join(c.value for c in ReasonCode)
        raise RolloutPolicyError(
            f"reason code {reason_code!r} is not one of {known}", field="reason_code"
        ) from None
    text = reason_text.strip()
    if len(text) > MAX_REASON_TEXT:
        raise RolloutPolicyError(
            f"the reason text is {len(text)} characters; at most {MAX_REASON_TEXT}",
            field="reason_text",
        )
    return code.value, text


def check_role(command: str, actor_role: Role | str, rollout_id: int | None) -> None:
    """Raise :class:`RolloutPermissionError` unless ``actor_role`` may give ``command``."""
    try:
        role = Role(actor_role)
    except ValueError:
        role = Role.VIEWER
    needed = REQUIRED_ROLE[command]
    if not role.permits(needed):
        raise RolloutPermissionError(
            f"{command.replace('_', ' ')} needs the {needed.value} role; you have {role.value}",
            command=command,
            rollout_id=rollout_id,
        )


async def record_transition(
    conn: AsyncConnection,
    rollout: RolloutRecord,
    command: str,
    *,
    actor: str,
    reason_code: str,
    reason_text: str,
    now: datetime,
    to_state: RolloutState | None = None,
    values: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> RolloutState:
    """Move ``rollout`` by ``command`` (checked by the state machine), stored and audited.

    The row is updated only if it is still in the state it was read in: another writer
    (a second central instance, a second operator) that moved it first makes this raise
    :class:`RolloutConflictError`. ``to_state`` skips the machine (the runner's own
    moves are checked by it already).
    """
    target = to_state or transition(
        rollout.state,
        command,
        require_second_approver=rollout.policy.require_second_approver,
        actor=actor,
        created_by=rollout.created_by,
        approved_by=rollout.approved_by,
    )
    result = await conn.execute(
        sa.update(rollouts)
        .where(rollouts.c.id == rollout.id, rollouts.c.state == rollout.state.value)
        .values(state=target.value, updated_at=now, **dict(values or {}))
    )
    if result.rowcount != 1:
        raise RolloutConflictError(
            f"rollout #{rollout.id} changed meanwhile; look again and retry",
            state=rollout.state,
            command=command,
        )
    await conn.execute(
        sa.insert(rollout_transitions).values(
            rollout_id=rollout.id,
            ts=now,
            command=command,
            from_state=rollout.state.value,
            to_state=target.value,
            actor=actor,
            reason_code=reason_code,
            reason_text=reason_text,
        )
    )
    await record_audit(
        conn,
        actor,
        f"rollout.{command}",
        f"rollout:{rollout.id}",
        {"from": rollout.state.value, "to": target.value, "name": rollout.name,
         "artifact": rollout.artifact, "reason_code": reason_code, **dict(detail or {})},
        reason_text or reason_code,
    )  # fmt: skip
    return target


# ---------------------------------------------------------------------- artifacts


async def resolve_artifact(
    conn: AsyncConnection, ref: ArtifactRecord | str | int
) -> ArtifactRecord:
    """The artifact ``ref`` names (a record, an id, ``name@version``, a SHA-256 prefix)."""
    if isinstance(ref, ArtifactRecord):
        return ref
    return await find_artifact(conn, str(ref))


def check_rollback(artifact: ArtifactRecord, back: ArtifactRecord) -> None:
    """Raise unless ``back`` can undo ``artifact``: same line, older, ``allow_downgrade``."""
    if back.id == artifact.id:
        raise RolloutPolicyError("the rollback artifact is the artifact rolled out",
                                 field="rollback_artifact")  # fmt: skip
    if back.name != artifact.name:
        raise RolloutPolicyError(
            f"the rollback artifact {back.label} is another firmware line than {artifact.label}",
            field="rollback_artifact",
        )
    if not back.allow_downgrade:
        raise RolloutPolicyError(
            f"{back.label} is not signed with allow_downgrade, so terminals on "
            f"{artifact.version} would refuse it; sign the previous version with "
            "--allow-downgrade and upload it",
            field="rollback_artifact",
        )
    if not FirmwareVersion(back.version) < FirmwareVersion(artifact.version):
        raise RolloutPolicyError(
            f"the rollback artifact {back.label} is not older than {artifact.label}",
            field="rollback_artifact",
        )


async def older_version(conn: AsyncConnection, image: ArtifactRecord) -> ArtifactRecord | None:
    """The newest older version of ``image``'s line signed with ``allow_downgrade``."""
    candidates = [
        a
        for a in await list_artifacts(conn, name=image.name, limit=500)
        if a.allow_downgrade and FirmwareVersion(a.version) < FirmwareVersion(image.version)
    ]
    return max(candidates, key=lambda a: FirmwareVersion(a.version), default=None)


async def cancel_pending(
    conn: AsyncConnection, rollout: RolloutRecord, *, actor: str, now: datetime, why: str
) -> list[int]:
    """Cancel the rollout's Actions that are not installing yet; their ids."""
    a, t = firmware_actions.c, rollout_targets.c
    pending = (
        await conn.execute(
            sa.select(a.id)
            .join(rollout_targets, t.action_id == a.id)
            .where(
                t.rollout_id == rollout.id,
                a.state.in_(sorted(s.value for s in CANCELLED_ON_ABORT)),
            )
            .order_by(a.id)
        )
    ).scalars()
    cancelled = [int(action_id) for action_id in pending]
    for action_id in cancelled:
        await cancel_action(conn, action_id, actor=actor, now=now, reason=why)
    return cancelled
