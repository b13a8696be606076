"""Firmware Actions as the store keeps them: the records, and the queries that read them.

The writes (create, statuses, offers, cancel, deadlines) are in
:mod:`posfleet.firmware.actions`; both take an open connection and leave the
transaction to the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import MaintenanceWindow
from posfleet.firmware.action_states import OPEN_STATES, ActionSnapshot, ActionState
from posfleet.store.column_types import UtcDateTime
from posfleet.store.schema import firmware_action_events, firmware_actions, firmware_artifacts

MAX_PAGE = 500
"""Largest page :func:`list_actions` returns."""


class ActionRecord(pydantic.BaseModel):
    """One Action as the API and the CLI show it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    artifact_id: int
    artifact_name: str
    artifact_version: str
    sha256: str
    terminal_id: str
    state: ActionState
    progress: float
    detail: str
    window: MaintenanceWindow
    allow_downgrade_confirmed: bool
    from_version: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    offered_at: datetime | None
    deadline: datetime
    finished_at: datetime | None
    attempts: int
    last_status_at: datetime | None
    rollout_id: int | None = None
    """The rollout that created the Action; None for a push."""

    @property
    def snapshot(self) -> ActionSnapshot:
        """What the state machine needs of this Action."""
        return ActionSnapshot(
            action_id=self.id,
            state=self.state,
            attempts=self.attempts,
            deadline=self.deadline,
            last_reported_at=self.last_status_at,
        )


class ActionEvent(pydantic.BaseModel):
    """One line of an Action's history."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    action_id: int
    ts: datetime
    source: str
    """``terminal`` for an ``fw/status``, ``centre`` for offers, retries, deadline, cancel."""
    actor: str
    state: str
    progress: float | None
    detail: str
    reported_at: datetime | None
    applied: bool
    """False for a status only recorded: late (after a final state) or stale."""
    action_state: ActionState
    note: str


_col = firmware_actions.c
_ACTION_COLUMNS = (
    *(col for col in firmware_actions.c if col.name != "open_key"),
    firmware_artifacts.c.name.label("artifact_name"),
    firmware_artifacts.c.version.label("artifact_version"),
    firmware_artifacts.c.sha256,
)
_FROM = firmware_actions.join(firmware_artifacts, _col.artifact_id == firmware_artifacts.c.id)
OPEN_STATE_NAMES = sorted(s.value for s in OPEN_STATES)
"""The stored names of every open state, for ``state IN (...)``."""


def record_of(row: sa.Row[Any]) -> ActionRecord:
    """The record of one row of :func:`action_query`."""
    return ActionRecord.model_validate(dict(row._mapping))


def action_query() -> sa.Select[Any]:
    """Actions with their artifact's name, version and SHA-256; add where and order."""
    return sa.select(*_ACTION_COLUMNS).select_from(_FROM)


async def get_action(
    conn: AsyncConnection, action_id: int, *, for_update: bool = False
) -> ActionRecord | None:
    """The Action with this id, if any; ``for_update`` locks its row (PostgreSQL).

    The lock is ``FOR NO KEY UPDATE``: it keeps other writers of the Action out but not
    a rollout linking its targets to the Action, whose foreign-key check only takes a
    key-share lock. With ``FOR UPDATE`` the ingest (applying a batch of statuses) and a
    rollout push (linking a batch of new Actions) could each wait on the other.
    """
    query = action_query().where(_col.id == action_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=firmware_actions, key_share=True)
    row = (await conn.execute(query)).first()
    return None if row is None else record_of(row)


async def open_action_of(conn: AsyncConnection, terminal_id: str) -> ActionRecord | None:
    """The terminal's open Action, if it has one."""
    row = (await conn.execute(action_query().where(_col.open_key == terminal_id))).first()
    return None if row is None else record_of(row)


async def open_actions_of(conn: AsyncConnection, terminal_ids: Sequence[str]) -> list[ActionRecord]:
    """The open Actions of these terminals (one query, by the open-key index)."""
    if not terminal_ids:
        return []
    query = action_query().where(_col.open_key.in_(sorted(set(terminal_ids)))).order_by(_col.id)
    return [record_of(row) for row in await conn.execute(query)]


async def list_actions(
    conn: AsyncConnection,
    *,
    states: Sequence[ActionState] | None = None,
    terminal_id: str | None = None,
    artifact_id: int | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[ActionRecord]:
    """Actions, newest first; pass the last id of a page as ``before_id`` for the next."""
    query = action_query().order_by(_col.id.desc()).limit(max(1, min(limit, MAX_PAGE + 1)))
    if states:
        query = query.where(_col.state.in_([s.value for s in states]))
    if terminal_id is not None:
        query = query.where(_col.terminal_id == terminal_id)
    if artifact_id is not None:
        query = query.where(_col.artifact_id == artifact_id)
    if before_id is not None:
        query = query.where(_col.id < before_id)
    return [record_of(row) for row in await conn.execute(query)]


async def count_by_state(
    conn: AsyncConnection, *, terminal_id: str | None = None, artifact_id: int | None = None
) -> dict[ActionState, int]:
    """How many Actions are in each state (every state listed, zeros included)."""
    query = sa.select(_col.state, sa.func.count()).group_by(_col.state)
    if terminal_id is not None:
        query = query.where(_col.terminal_id == terminal_id)
    if artifact_id is not None:
        query = query.where(_col.artifact_id == artifact_id)
    counts = dict.fromkeys(ActionState, 0)
    for state, count in await conn.execute(query):
        counts[ActionState(state)] = int(count)
    return counts


async def list_events(conn: AsyncConnection, action_id: int) -> list[ActionEvent]:
    """An Action's history, oldest first."""
    e = firmware_action_events.c
    query = sa.select(firmware_action_events).where(e.action_id == action_id).order_by(e.id)
    return [ActionEvent.model_validate(dict(row._mapping)) for row in await conn.execute(query)]


def wire_action_id(action_id: int, attempt: int) -> str:
    """The ``action_id`` an offer carries: ``<id>.<attempt>``, e.g. ``17.2``.

    Each attempt has an id of its own, because an agent works on an action id once (an
    offer it has seen is only answered with where that action stands): a retry must
    look new to it. Statuses of an earlier attempt are then recognised as such.
    """
    return f"{action_id}.{attempt}"


def parse_wire_action_id(raw: str) -> tuple[int, int | None] | None:
    """``(id, attempt)`` behind a wire ``action_id`` (``17.2``, or a bare ``17``).

    None for anything that cannot be one of ours.
    """
    number, sep, attempt = raw.partition(".")
    if not (number.isascii() and number.isdigit()) or not 0 < len(number) <= 18:
        return None
    if not sep:
        return int(number), None
    if not (attempt.isascii() and attempt.isdigit()) or not 0 < len(attempt) <= 6:
        return None
    return int(number), int(attempt)


def parse_action_id(raw: str) -> int | None:
    """The Action's numeric id behind a wire ``action_id``, or None if it cannot be ours."""
    parsed = parse_wire_action_id(raw)
    return None if parsed is None else parsed[0]


async def next_deadline(conn: AsyncConnection) -> datetime | None:
    """The earliest deadline of any open Action, for the sweeper's next wake-up."""
    # Typed, so that SQLite's text comes back as an aware datetime like the column does.
    earliest = sa.func.min(_col.deadline, type_=UtcDateTime())
    found: datetime | None = await conn.scalar(
        sa.select(earliest).where(_col.state.in_(OPEN_STATE_NAMES))
    )
    return found


async def due_offers(
    conn: AsyncConnection, *, now: datetime, limit: int = 500
) -> list[ActionRecord]:
    """Actions whose (next) offer still has to go out, and time left to act on it."""
    due = [s.value for s in ActionState if s.offer_due]
    query = (
        action_query()
        .where(_col.state.in_(due), _col.deadline > now)
        .order_by(_col.id)
        .limit(limit)
    )
    return [record_of(row) for row in await conn.execute(query)]
