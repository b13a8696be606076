"""Firmware Actions in the store: create them and apply the state machine's decisions.

An Action is one terminal's update to one artifact. Its state is decided by
:mod:`posfleet.firmware.action_states` and kept here by name, with every event (the
centre's and each ``fw/status`` of the terminal) in ``firmware_action_events``. At most
one Action per terminal is open: an open Action carries an ``open_key`` (its terminal
id) under a unique constraint, so two pushes racing for one terminal cannot both win.
The records and the queries that only read are in :mod:`posfleet.firmware.action_records`.

Every function takes an open connection and leaves the transaction to the caller (use
:func:`~posfleet.store.write_transaction` for the read-then-write ones), so an Action
and its event commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import MaintenanceWindow, UpdateStatus
from posfleet.firmware.action_records import (
    OPEN_STATE_NAMES,
    ActionRecord,
    action_query,
    get_action,
    open_action_of,
    parse_action_id,
    parse_wire_action_id,
    record_of,
)
from posfleet.firmware.action_states import (
    FINAL_STATES,
    ActionState,
    Decision,
    RetryPolicy,
    on_cancel,
    on_deadline,
    on_offer_published,
    on_report,
)
from posfleet.firmware.errors import FirmwareError
from posfleet.store.schema import firmware_action_events, firmware_actions
from posfleet.store.upsert import insert_for

CENTRE = "centre"
TERMINAL = "terminal"
_col = firmware_actions.c


class ActionNotFoundError(FirmwareError):
    """No firmware Action has this id."""

    def __init__(self, action_id: int) -> None:
        super().__init__(f"no firmware action #{action_id}")
        self.action_id = action_id


class TerminalBusyError(FirmwareError):
    """The terminal already has an open Action; it must end (or be cancelled) first."""

    def __init__(self, terminal_id: str, open_action: int | None) -> None:
        which = f" #{open_action}" if open_action is not None else ""
        super().__init__(
            f"terminal {terminal_id} already has an open firmware action{which}; "
            "wait for it to end or cancel it"
        )
        self.terminal_id = terminal_id
        self.open_action = open_action


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """What :func:`record_status` did with one ``fw/status``."""

    stored: bool
    """False for a redelivered copy of a status already recorded."""
    refused: str | None = None
    """Why the status belongs to no Action of this terminal (for a dead letter)."""
    decision: Decision | None = None
    action: ActionRecord | None = None


async def create_action(
    conn: AsyncConnection,
    *,
    artifact_id: int,
    terminal_id: str,
    window: MaintenanceWindow,
    deadline: datetime,
    created_by: str,
    now: datetime,
    allow_downgrade_confirmed: bool = False,
    from_version: str | None = None,
    rollout_id: int | None = None,
) -> ActionRecord:
    """A new Action in state ``created``; :class:`TerminalBusyError` if one is open.

    A rollout's Action names it (``rollout_id``): a rollout creates one Action per
    terminal and image, so a second one is refused as busy too.
    """
    values = {
        "artifact_id": artifact_id,
        "terminal_id": terminal_id,
        "open_key": terminal_id,
        "state": ActionState.CREATED.value,
        "window": window.model_dump(mode="json"),
        "allow_downgrade_confirmed": allow_downgrade_confirmed,
        "from_version": from_version,
        "created_by": created_by,
        "created_at": now,
        "updated_at": now,
        "deadline": deadline,
    }
    if rollout_id is not None:
        values["rollout_id"] = rollout_id
    try:
        # A savepoint: on PostgreSQL a failed statement would spoil the whole transaction.
        async with conn.begin_nested():
            action_id = (
                await conn.execute(sa.insert(firmware_actions).values(values).returning(_col.id))
            ).scalar_one()
    except IntegrityError:
        busy = await open_action_of(conn, terminal_id)
        raise TerminalBusyError(terminal_id, busy.id if busy else None) from None
    await _event(
        conn,
        action_id,
        now=now,
        actor=created_by,
        state=ActionState.CREATED,
        action_state=ActionState.CREATED,
        note=f"deadline {deadline.isoformat()}",
    )
    created = await get_action(conn, action_id)
    assert created is not None
    return created


async def _event(
    conn: AsyncConnection,
    action_id: int,
    *,
    now: datetime,
    actor: str,
    state: str,
    action_state: ActionState,
    source: str = CENTRE,
    applied: bool = True,
    progress: float | None = None,
    detail: str = "",
    reported_at: datetime | None = None,
    note: str = "",
) -> bool:
    """Append to the history; False if this terminal status was recorded already."""
    e = firmware_action_events.c
    stmt = (
        insert_for(conn, firmware_action_events)
        .values(
            action_id=action_id,
            ts=now,
            source=source,
            actor=actor,
            state=str(state),
            progress=progress,
            detail=detail,
            reported_at=reported_at,
            applied=applied,
            action_state=action_state.value,
            note=note,
        )
        .on_conflict_do_nothing(index_elements=[e.action_id, e.reported_at, e.state, e.progress])
    )
    result = await conn.execute(stmt)
    return result.rowcount == 1


async def _apply(
    conn: AsyncConnection,
    action: ActionRecord,
    decision: Decision,
    *,
    now: datetime,
    **values: Any,
) -> bool:
    """Write ``decision`` onto the Action if the row is still in the state it was read in.

    False when another writer (a status, a second central instance) changed it first.
    """
    changes: dict[str, Any] = {"state": decision.state.value, "updated_at": now, **values}
    if decision.state.final:
        changes["open_key"] = None
        changes["finished_at"] = now
    result = await conn.execute(
        sa.update(firmware_actions)
        .where(_col.id == action.id, _col.state == action.state.value)
        .values(changes)
    )
    return result.rowcount == 1


async def record_status(
    conn: AsyncConnection,
    terminal_id: str,
    status: UpdateStatus,
    *,
    now: datetime,
    policy: RetryPolicy,
) -> StatusOutcome:
    """Apply one ``fw/status`` from ``terminal_id`` to its Action, with its history line.

    A status for no Action, or for another terminal's, is refused (``refused`` says why)
    and changes nothing. A redelivered copy is recognised and not stored twice.
    """
    parsed = parse_wire_action_id(status.action_id)
    action = None if parsed is None else await get_action(conn, parsed[0], for_update=True)
    if action is None:
        return StatusOutcome(False, f"fw/status: no firmware action {status.action_id!r}")
    if action.terminal_id != terminal_id:
        return StatusOutcome(
            False,
            f"fw/status: firmware action {action.id} belongs to terminal {action.terminal_id}, "
            f"not {terminal_id}",
        )
    decision = on_report(
        action.snapshot,
        status.state,
        status.detail,
        reported_at=status.ts,
        now=now,
        policy=policy,
        attempt=parsed[1] if parsed else None,
    )
    fresh = await _event(
        conn,
        action.id,
        now=now,
        actor=f"terminal:{terminal_id}",
        source=TERMINAL,
        state=status.state.value,
        action_state=decision.state,
        applied=decision.applied,
        progress=status.progress,
        detail=status.detail,
        reported_at=status.ts,
        note=decision.note,
    )
    if not fresh:
        return StatusOutcome(False, action=action)
    if decision.applied:
        await _apply(
            conn,
            action,
            decision,
            now=now,
            progress=status.progress,
            detail=status.detail,
            last_status_at=status.ts,
        )
    return StatusOutcome(True, decision=decision, action=await get_action(conn, action.id))


async def mark_offered(
    conn: AsyncConnection, action_id: int, *, now: datetime, actor: str = "system"
) -> ActionRecord | None:
    """Record that an offer for the Action went out; None if it is final meanwhile."""
    action = await get_action(conn, action_id, for_update=True)
    if action is None or action.state.final:
        return None
    decision = on_offer_published(action.snapshot)
    attempts = action.attempts + 1 if decision.applied else action.attempts
    await _event(
        conn,
        action.id,
        now=now,
        actor=actor,
        state="offered",
        action_state=decision.state,
        applied=decision.applied,
        note=decision.note,
    )
    if decision.applied:
        await _apply(conn, action, decision, now=now, offered_at=now, attempts=attempts)
    else:
        await conn.execute(
            sa.update(firmware_actions).where(_col.id == action.id).values(offered_at=now)
        )
    return await get_action(conn, action.id)


async def cancel_action(
    conn: AsyncConnection, action_id: int, *, actor: str, now: datetime, reason: str = ""
) -> ActionRecord:
    """Cancel an open Action; :class:`ActionTransitionError` if it is final already."""
    action = await get_action(conn, action_id, for_update=True)
    if action is None:
        raise ActionNotFoundError(action_id)
    decision = on_cancel(action.snapshot)
    detail = reason or decision.note
    await _event(
        conn,
        action.id,
        now=now,
        actor=actor,
        state=decision.state,
        action_state=decision.state,
        detail=detail,
        note=decision.note,
    )
    await _apply(conn, action, decision, now=now, detail=detail)
    cancelled = await get_action(conn, action.id)
    assert cancelled is not None
    return cancelled


async def expire_overdue(
    conn: AsyncConnection, *, now: datetime, limit: int = 500
) -> list[ActionRecord]:
    """Move open Actions past their deadline to ``timed_out``; return them."""
    query = (
        action_query()
        .where(_col.state.in_(OPEN_STATE_NAMES), _col.deadline <= now)
        .order_by(_col.deadline)
        .limit(limit)
    )
    expired: list[ActionRecord] = []
    for row in (await conn.execute(query)).all():
        action = record_of(row)
        decision = on_deadline(action.snapshot, now=now)
        # Unlocked read: the state is written only if nothing changed it meanwhile,
        # and the history line only if the state was written.
        if not decision.applied or not await _apply(
            conn, action, decision, now=now, detail=decision.note
        ):
            continue
        await _event(
            conn,
            action.id,
            now=now,
            actor="system",
            state=decision.state,
            action_state=decision.state,
            detail=decision.note,
            note=f"deadline {action.deadline.isoformat()}",
        )
        done = await get_action(conn, action.id)
        assert done is not None
        expired.append(done)
    return expired


async def is_action_open(conn: AsyncConnection, action_id: str | int) -> bool:
    """True while the Action is open: the download route refuses tokens of final ones."""
    number = parse_action_id(str(action_id))
    if number is None:
        return False
    state = await conn.scalar(sa.select(_col.state).where(_col.id == number))
    return state is not None and ActionState(state) not in FINAL_STATES
