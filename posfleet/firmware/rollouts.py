"""Rollouts in the store: the commands staff give, with their roles and the four-eyes rule.

A rollout updates a target set of terminals to one artifact, wave by wave; each
terminal's update is an ordinary Action, created by the
:class:`~posfleet.firmware.rollout_runner.RolloutRunner` through the push path. Here:

- :func:`create_rollout`, :func:`preview_rollout` (the dry run; a draft becomes
  ``previewed``), :func:`request_approval`, :func:`approve_rollout`,
  :func:`start_rollout` (resolves the targets and their waves), :func:`pause_rollout`,
  :func:`resume_rollout`, :func:`abort_rollout` (cancels the Actions not installing yet),
  :func:`rollback_rollout` (the runner then offers the previous version to the terminals
  already updated);
- :func:`run_command`: a command in its own transaction, whose refusal for the actor's
  role or the four-eyes rule is audited even though the command is not carried out;
- reading: :func:`~posfleet.firmware.rollout_queries.get_rollout` and
  :func:`~posfleet.firmware.rollout_queries.list_rollouts`, re-exported here.

Roles: starting, resuming, rolling back, approving, aborting and creating need ``ops``;
pausing (the emergency brake) ``support``. With ``require_second_approver`` a start
needs an approval by someone other than the creator, and a resume or a roll back must
come from someone other than the creator. Every command takes a reason code and text,
is stored in ``rollout_transitions`` and written to the audit log (``rollout.<command>``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.firmware.artifacts import ArtifactRecord, get_artifact
from posfleet.firmware.rollout_machine import RolloutApprovalError, transition
from posfleet.firmware.rollout_model import (
    RolloutPolicy,
    RolloutPolicyError,
    RolloutState,
    TargetFilter,
    WaveState,
)
from posfleet.firmware.rollout_planner import plan, preview, summarize
from posfleet.firmware.rollout_queries import get_rollout, list_rollouts, load_candidates
from posfleet.firmware.rollout_records import (
    RolloutConflictError,
    RolloutNotFoundError,
    RolloutPermissionError,
    RolloutPreview,
    RolloutRecord,
)
from posfleet.firmware.rollout_transitions import (
    FOUR_EYES,
    cancel_pending,
    check_reason,
    check_role,
    check_rollback,
    older_version,
    record_transition,
    resolve_artifact,
    seed_of,
)
from posfleet.store.accounts import Role, record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.schema import (
    rollout_groups,
    rollout_targets,
    rollout_transitions,
    rollouts,
)

MAX_NAME = 128
"""Longest rollout name."""

__all__ = [
    "RolloutConflictError",
    "RolloutNotFoundError",
    "RolloutPermissionError",
    "abort_rollout",
    "approve_rollout",
    "cancel_pending",
    "create_rollout",
    "get_rollout",
    "list_rollouts",
    "pause_rollout",
    "preview_rollout",
    "record_transition",
    "request_approval",
    "resume_rollout",
    "rollback_rollout",
    "run_command",
    "start_rollout",
]

# ------------------------------------------------------------------------- creating


async def create_rollout(
    conn: AsyncConnection,
    *,
    name: str,
    artifact: ArtifactRecord | str | int,
    target: TargetFilter,
    policy: RolloutPolicy,
    actor: str,
    reason_code: str,
    reason_text: str = "",
    rollback_artifact: ArtifactRecord | str | int | None = None,
    actor_role: Role | str | None = None,
    now: datetime | None = None,
) -> RolloutRecord:
    """A new rollout in ``draft`` (audited as ``rollout.create``).

    ``artifact`` and ``rollback_artifact`` are records, ids, ``name@version`` or SHA-256
    prefixes (:class:`~posfleet.firmware.errors.ArtifactNotFoundError` if unknown). The
    rollback artifact, if given, must be an older version of the same line signed with
    ``allow_downgrade``. With ``actor_role`` the ops role is checked.
    """
    now = now or utcnow()
    if actor_role is not None:
        check_role("create", actor_role, None)
    code, text = check_reason(reason_code, reason_text)
    name = name.strip()
    if not 0 < len(name) <= MAX_NAME:
        raise RolloutPolicyError(f"a rollout's name is 1 to {MAX_NAME} characters", field="name")
    image = await resolve_artifact(conn, artifact)
    back = None if rollback_artifact is None else await resolve_artifact(conn, rollback_artifact)
    if back is not None:
        check_rollback(image, back)
    rollout_id = (
        await conn.execute(
            sa.insert(rollouts)
            .values(
                name=name,
                artifact_id=image.id,
                rollback_artifact_id=None if back is None else back.id,
                state=RolloutState.DRAFT.value,
                target_filter=target.to_json(),
                policy=policy.to_json(),
                created_by=actor,
                created_at=now,
                updated_at=now,
                reason_code=code,
                reason_text=text,
            )
            .returning(rollouts.c.id)
        )
    ).scalar_one()
    await conn.execute(
        sa.insert(rollout_transitions).values(
            rollout_id=rollout_id, ts=now, command="create", from_state=None,
            to_state=RolloutState.DRAFT.value, actor=actor, reason_code=code, reason_text=text,
        )
    )  # fmt: skip
    await record_audit(
        conn,
        actor,
        "rollout.create",
        f"rollout:{rollout_id}",
        {"name": name, "artifact": image.label, "target": target.to_json(),
         "policy": policy.to_json(), "reason_code": code},
        text or code,
    )  # fmt: skip
    return await get_rollout(conn, rollout_id)


async def preview_rollout(
    conn: AsyncConnection, rollout_id: int, *, now: datetime | None = None, actor: str = "system"
) -> RolloutPreview:
    """The dry run on today's fleet: who is in which wave, roughly when, who is excluded.

    A draft becomes ``previewed`` (stored, by ``actor``); in any other state the preview
    changes nothing.
    """
    now = now or utcnow()
    rollout = await get_rollout(conn, rollout_id, for_update=True)
    image = await get_artifact(conn, rollout.artifact_id)
    assert image is not None  # a foreign key
    candidates = await load_candidates(conn)
    planned = plan(
        candidates,
        image.signed_manifest.manifest,
        rollout.policy,
        now=now,
        seed=seed_of(rollout.id),
        target=rollout.target,
    )
    rows = preview(planned, candidates, rollout.policy, now=now)
    if rollout.state is RolloutState.DRAFT:
        await record_transition(
            conn, rollout, "preview", actor=actor, reason_code=rollout.reason_code,
            reason_text="", now=now,
            detail={"terminals": planned.total, "excluded": planned.exclusion_counts()},
        )  # fmt: skip
    waves = summarize(rows, len(rollout.policy.waves), deadline=rollout.policy.action_deadline)
    return RolloutPreview(rows, list(planned.excluded), waves, rollout.policy.warnings())


# --------------------------------------------------------------------- the commands


async def _prepare(
    conn: AsyncConnection,
    rollout_id: int,
    command: str,
    *,
    actor: str,
    actor_role: Role | str,
    reason_code: str,
    reason_text: str,
) -> tuple[RolloutRecord, str, str]:
    code, text = check_reason(reason_code, reason_text)
    check_role(command, actor_role, rollout_id)
    rollout = await get_rollout(conn, rollout_id, for_update=True)
    if (
        command in FOUR_EYES
        and rollout.policy.require_second_approver
        and actor == rollout.created_by
    ):
        raise RolloutPermissionError(
            f"{actor} created this rollout; with a second approver required, someone else "
            f"must {command.replace('_', ' ')} it",
            command=command,
            rollout_id=rollout_id,
        )
    return rollout, code, text


async def _move(
    conn: AsyncConnection,
    rollout: RolloutRecord,
    command: str,
    *,
    actor: str,
    code: str,
    text: str,
    now: datetime,
    values: Mapping[str, Any] | None = None,
    detail: Mapping[str, Any] | None = None,
) -> RolloutRecord:
    try:
        await record_transition(
            conn, rollout, command, actor=actor, reason_code=code, reason_text=text, now=now,
            values=values, detail=detail,
        )  # fmt: skip
    except RolloutApprovalError as exc:
        raise RolloutPermissionError(str(exc), command=command, rollout_id=rollout.id) from None
    return await get_rollout(conn, rollout.id)


async def request_approval(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """``previewed`` -> ``awaiting_approval``: ask a second person to approve."""
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "request_approval", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    return await _move(conn, rollout, "request_approval", actor=actor, code=code, text=text,
                       now=now)  # fmt: skip


async def approve_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """Record ``actor``'s approval (never the creator's); a previewed rollout is asked for it
    first, in the same transaction."""
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "approve", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    if rollout.state is RolloutState.PREVIEWED:
        rollout = await _move(conn, rollout, "request_approval", actor=actor, code=code,
                              text=text, now=now)  # fmt: skip
    return await _move(conn, rollout, "approve", actor=actor, code=code, text=text, now=now,
                       values={"approved_by": actor, "approved_at": now})  # fmt: skip


async def start_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """Resolve the targets on today's fleet, store their waves and start (``running``).

    :class:`RolloutPermissionError` without the approval the policy asks for;
    :class:`RolloutConflictError` when no terminal of the target set can take the image.
    """
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "start", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    try:  # the four-eyes rule before the fleet is read
        transition(
            rollout.state, "start",
            require_second_approver=rollout.policy.require_second_approver,
            actor=actor, created_by=rollout.created_by, approved_by=rollout.approved_by,
        )  # fmt: skip
    except RolloutApprovalError as exc:
        raise RolloutPermissionError(str(exc), command="start", rollout_id=rollout_id) from None
    image = await get_artifact(conn, rollout.artifact_id)
    assert image is not None
    candidates = await load_candidates(conn)
    planned = plan(
        candidates, image.signed_manifest.manifest, rollout.policy, now=now,
        seed=seed_of(rollout.id), target=rollout.target,
    )  # fmt: skip
    if planned.total == 0:
        counts = ", ".join(f"{n} {r}" for r, n in sorted(planned.exclusion_counts().items()))
        raise RolloutConflictError(
            f"no terminal of the target set can take {rollout.artifact}"
            + (f" (excluded: {counts})" if counts else " (no terminal matches the filter)"),
            state=rollout.state,
            command="start",
        )
    by_id = {c.terminal_id: c for c in candidates}
    placed: list[tuple[str, int | None, str | None]] = [
        (tid, w, None) for w, ids in enumerate(planned.waves) for tid in ids
    ]
    placed += [(tid, None, why) for tid, why in planned.excluded]
    await conn.execute(
        sa.insert(rollout_targets),
        [
            {"rollout_id": rollout.id, "terminal_id": tid, "wave": wave,
             "excluded_reason": why, "added_at": now, "site_id": by_id[tid].site_id,
             "from_version": by_id[tid].firmware_version}
            for tid, wave, why in placed
        ],
    )  # fmt: skip
    await conn.execute(
        sa.insert(rollout_groups),
        [
            {"rollout_id": rollout.id, "wave": w, "state": WaveState.PENDING.value,
             "planned": len(ids)}
            for w, ids in enumerate(planned.waves)
        ],
    )  # fmt: skip
    return await _move(
        conn, rollout, "start", actor=actor, code=code, text=text, now=now,
        values={"started_at": now, "current_wave": 0, "paused_reason": None},
        detail={"terminals": planned.total, "excluded": planned.exclusion_counts(),
                "waves": [len(w) for w in planned.waves]},
    )  # fmt: skip


async def pause_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """``running`` -> ``paused``: no new offers; Actions under way go on."""
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "pause", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    why = f"paused by {actor}" + (f": {text}" if text else "")
    return await _move(conn, rollout, "pause", actor=actor, code=code, text=text, now=now,
                       values={"paused_reason": why})  # fmt: skip


async def resume_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """``paused`` -> ``running``. A wave that stopped the rollout is accepted as it is:
    its thresholds and a failed health gate stop it no more, and the next wave follows."""
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "resume", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    await _move(conn, rollout, "resume", actor=actor, code=code, text=text, now=now,
                         values={"paused_reason": None})  # fmt: skip
    g = rollout_groups.c
    await conn.execute(
        sa.update(rollout_groups)
        .where(
            g.rollout_id == rollout_id,
            g.wave == rollout.current_wave,
            g.state == WaveState.FAILED.value,
        )
        .values(state=WaveState.RUNNING.value, accepted_by=actor, finished_at=None)
    )
    return await get_rollout(conn, rollout_id)


async def abort_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
) -> RolloutRecord:  # fmt: skip
    """Stop for good: no new offers, and the Actions not installing yet are cancelled."""
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "abort", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    transition(rollout.state, "abort")  # refuse before cancelling anything
    cancelled = await cancel_pending(
        conn, rollout, actor=actor, now=now, why=f"rollout #{rollout.id} aborted by {actor}"
    )
    return await _move(conn, rollout, "abort", actor=actor, code=code, text=text, now=now,
                       values={"finished_at": now}, detail={"cancelled": cancelled})  # fmt: skip


async def rollback_rollout(
    conn: AsyncConnection, rollout_id: int, *, actor: str, actor_role: Role | str,
    reason_code: str, reason_text: str = "", now: datetime | None = None,
    rollback_artifact: ArtifactRecord | str | int | None = None,
) -> RolloutRecord:  # fmt: skip
    """Offer the previous version to every terminal this rollout updated (``rolled_back``).

    Pending Actions are cancelled here; the runner then offers the rollback artifact
    (``rollback_artifact``, else the one named at creation, else the newest older
    version of the same line signed with ``allow_downgrade``), rate-limited, as Actions
    with the downgrade confirmed. :class:`RolloutConflictError` if there is none.
    """
    now = now or utcnow()
    rollout, code, text = await _prepare(
        conn, rollout_id, "rollback", actor=actor, actor_role=actor_role,
        reason_code=reason_code, reason_text=reason_text,
    )  # fmt: skip
    transition(rollout.state, "rollback")
    image = await get_artifact(conn, rollout.artifact_id)
    assert image is not None
    chosen = rollback_artifact or rollout.rollback_artifact_id
    back = (
        await resolve_artifact(conn, chosen)
        if chosen is not None
        else await older_version(conn, image)
    )
    if back is None:
        raise RolloutConflictError(
            f"no artifact to roll back to: upload the previous {image.name} version signed "
            "with allow_downgrade, or name one",
            state=rollout.state,
            command="rollback",
        )
    check_rollback(image, back)
    cancelled = await cancel_pending(
        conn, rollout, actor=actor, now=now, why=f"rollout #{rollout.id} rolled back by {actor}"
    )
    return await _move(
        conn, rollout, "rollback", actor=actor, code=code, text=text, now=now,
        values={"rollback_artifact_id": back.id, "finished_at": None},
        detail={"rollback_artifact": back.label, "cancelled": cancelled},
    )  # fmt: skip


_COMMANDS = {
    "request_approval": request_approval,
    "approve": approve_rollout,
    "start": start_rollout,
    "pause": pause_rollout,
    "resume": resume_rollout,
    "abort": abort_rollout,
    "rollback": rollback_rollout,
}


async def run_command(
    engine: AsyncEngine,
    command: str,
    rollout_id: int,
    *,
    actor: str,
    actor_role: Role | str,
    reason_code: str,
    reason_text: str = "",
    **options: Any,
) -> RolloutRecord:
    """Carry out ``command`` (``start``, ``pause`` ...) in a transaction of its own.

    A :class:`RolloutPermissionError` is audited (``rollout.<command>.refused``, in a
    separate transaction, as the command's own is rolled back) and raised again.
    """
    if command not in _COMMANDS:
        raise RolloutPolicyError(
            f"unknown rollout command {command!r}; known: {', '.join(_COMMANDS)}",
            field="command",
        )
    try:
        async with write_transaction(engine) as conn:
            return await _COMMANDS[command](
                conn, rollout_id, actor=actor, actor_role=actor_role,
                reason_code=reason_code, reason_text=reason_text, **options,
            )  # fmt: skip
    except RolloutPermissionError as exc:
        async with write_transaction(engine) as conn:
            await record_audit(
                conn,
                actor,
                f"rollout.{command}.refused",
                f"rollout:{rollout_id}",
                {"role": str(actor_role), "why": str(exc)},
                reason_text or reason_code,
            )
        raise
