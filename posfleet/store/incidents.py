"""Incidents, their notes and playbook runs: the tables' plain queries.

One open incident per (terminal, rule) holds by construction: an unresolved incident
carries an ``open_key`` under a unique constraint, and opening is an idempotent upsert
on that key. Every function takes an open connection and leaves the transaction to the
caller, except where a savepoint is needed to survive a lost race.

The lifecycle (which state may become which, when a condition that comes back reopens
its incident, what resolving writes) is decided in
:mod:`posfleet.diagnostics.incident_lifecycle`; :func:`update_incident` writes its
decisions, guarded by the states they were decided for. Fleet correlation's queries are
in :mod:`posfleet.store.incident_groups`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import incident_notes, incidents, playbook_runs, terminals
from posfleet.store.upsert import insert_for

MAX_PAGE = 500
"""Largest page :func:`list_incidents` returns."""


class IncidentState(StrEnum):
    """Where an incident is in its lifecycle."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class IncidentKind(StrEnum):
    """One terminal's problem, or a fleet-level group of them sharing a cause."""

    TERMINAL = "terminal"
    FLEET = "fleet"


class OpenOutcome(StrEnum):
    """What opening did: :func:`open_incident`, or the lifecycle's open-or-reopen."""

    OPENED = "opened"
    REOPENED = "reopened"
    """A recently resolved incident came back (flapping): the same incident, reopened."""
    ALREADY_OPEN = "already_open"


class RunState(StrEnum):
    """State of a playbook run; every run ends in one of the last three."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class IncidentSpec:
    """What to open: the rule's knowledge plus the terminal's identity at that moment."""

    rule_id: str
    title: str
    component: str
    severity: str
    escalation: str
    cause: str
    remedy: Sequence[str]
    kind: IncidentKind = IncidentKind.TERMINAL
    terminal_id: str | None = None
    correlation: str | None = None
    facts: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    firmware_version: str | None = None
    site_id: str | None = None
    merchant_id: str | None = None

    @property
    def open_key(self) -> str:
        """The key only one unresolved incident may hold."""
        if self.kind is IncidentKind.FLEET:
            return f"fleet/{self.correlation or self.rule_id}"
        return f"{self.terminal_id}/{self.rule_id}"


class IncidentRecord(pydantic.BaseModel):
    """An incident as staff and the API see it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    kind: IncidentKind
    terminal_id: str | None
    rule_id: str
    state: IncidentState
    title: str
    component: str
    severity: str
    escalation: str
    cause: str
    remedy: list[str]
    facts: dict[str, Any]
    parent_id: int | None
    correlation: str | None
    model: str | None
    firmware_version: str | None
    site_id: str | None
    merchant_id: str | None
    opened_at: datetime
    last_seen_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    updated_at: datetime
    occurrences: int
    reopen_count: int
    assignee: str | None
    acknowledged_by: str | None
    resolved_by: str | None
    resolution: str
    escalated_to: str | None


class IncidentNote(pydantic.BaseModel):
    """One entry of an incident's timeline: a staff note, a command, a playbook outcome."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    incident_id: int
    ts: datetime
    author: str
    kind: str
    text: str
    detail: dict[str, Any]


class PlaybookRun(pydantic.BaseModel):
    """One run of a playbook against a terminal, and its outcome."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    incident_id: int | None
    terminal_id: str
    playbook: str
    state: RunState
    verdict: str
    remedy: list[str]
    steps: list[dict[str, Any]]
    started_by: str
    started_at: datetime
    deadline_at: datetime
    finished_at: datetime | None


_COLUMNS = [incidents.c[name] for name in IncidentRecord.model_fields]


def _record(row: sa.Row[Any]) -> IncidentRecord:
    return IncidentRecord.model_validate(dict(row._mapping))


# -- writing --------------------------------------------------------------------------------


async def open_incident(
    conn: AsyncConnection,
    spec: IncidentSpec,
    *,
    now: datetime,
) -> tuple[int, OpenOutcome]:
    """A new incident for ``spec``'s key, or one more occurrence of the one holding it.

    Safe under any concurrency: racing callers all end up on the same row, and exactly
    one of them gets ``OPENED``. A resolved incident is never reopened here: whether a
    condition that comes back is the same incident (flapping) is the lifecycle's call,
    which :func:`posfleet.diagnostics.incident_recorder.open_or_reopen` makes first.
    """
    key = spec.open_key
    touched = await count_occurrence(conn, key, now=now)
    if touched is not None:
        return touched, OpenOutcome.ALREADY_OPEN
    stmt = insert_for(conn, incidents).values(
        kind=spec.kind.value,
        terminal_id=spec.terminal_id,
        rule_id=spec.rule_id,
        open_key=key,
        state=IncidentState.OPEN.value,
        title=spec.title[:200],
        component=spec.component,
        severity=spec.severity,
        escalation=spec.escalation,
        cause=spec.cause,
        remedy=list(spec.remedy),
        facts=spec.facts,
        correlation=spec.correlation,
        model=spec.model,
        firmware_version=spec.firmware_version,
        site_id=spec.site_id,
        merchant_id=spec.merchant_id,
        opened_at=now,
        last_seen_at=now,
        updated_at=now,
        occurrences=1,
    )
    upsert = stmt.on_conflict_do_update(
        index_elements=[incidents.c.open_key],
        set_={
            "occurrences": incidents.c.occurrences + 1,
            "last_seen_at": stmt.excluded.last_seen_at,
        },
    ).returning(incidents.c.id, incidents.c.occurrences)
    row = (await conn.execute(upsert)).one()
    outcome = OpenOutcome.OPENED if row.occurrences == 1 else OpenOutcome.ALREADY_OPEN
    return int(row.id), outcome


async def count_occurrence(conn: AsyncConnection, open_key: str, *, now: datetime) -> int | None:
    """One more occurrence of the unresolved incident holding ``open_key``; its id, or None."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.open_key == open_key)
        .values(occurrences=incidents.c.occurrences + 1, last_seen_at=now)
        .returning(incidents.c.id)
    )
    found = (await conn.execute(stmt)).scalar()
    return None if found is None else int(found)


async def update_incident(
    conn: AsyncConnection,
    incident_id: int,
    values: Mapping[str, Any],
    *,
    expected_states: Collection[IncidentState] | None = None,
    increments: Mapping[str, int] | None = None,
) -> bool:
    """Write ``values`` (and add ``increments`` to those counters) on one incident; False
    if it is gone or no longer in one of ``expected_states``.

    The state guard makes a lifecycle step a compare-and-set: a step decided on a stale
    read changes nothing. Giving the incident an open key that another unresolved
    incident holds is refused by the unique constraint: False too, and nothing changed.
    """
    i = incidents.c
    added = {name: i[name] + amount for name, amount in (increments or {}).items()}
    stmt = sa.update(incidents).where(i.id == incident_id).values(**values, **added)
    if expected_states is not None:
        stmt = stmt.where(i.state.in_([state.value for state in expected_states]))
    if values.get("open_key") is None:
        return (await conn.execute(stmt)).rowcount == 1
    try:
        # A savepoint: a lost race for the key must not abort the caller's transaction.
        async with conn.begin_nested():
            changed = (await conn.execute(stmt)).rowcount == 1
    except IntegrityError:
        return False
    return changed


def terminal_open_key(terminal_id: str, rule_id: str) -> str:
    """The open key of a terminal's incident under ``rule_id``."""
    return f"{terminal_id}/{rule_id}"


async def add_note(
    conn: AsyncConnection,
    incident_id: int,
    *,
    author: str,
    text: str,
    now: datetime,
    kind: str = "note",
    detail: dict[str, Any] | None = None,
) -> int:
    """Append to the incident's timeline; returns the note's id."""
    stmt = (
        sa.insert(incident_notes)
        .values(
            incident_id=incident_id,
            ts=now,
            author=author,
            kind=kind,
            text=text,
            detail=detail or {},
        )
        .returning(incident_notes.c.id)
    )
    note_id = (await conn.execute(stmt)).scalar_one()
    await conn.execute(
        sa.update(incidents).where(incidents.c.id == incident_id).values(updated_at=now)
    )
    return int(note_id)


async def set_parent(
    conn: AsyncConnection, child_ids: Sequence[int], parent_id: int | None, *, now: datetime
) -> None:
    """Make ``child_ids`` children of the fleet incident ``parent_id``."""
    if not child_ids:
        return
    await conn.execute(
        sa.update(incidents)
        .where(incidents.c.id.in_(list(child_ids)))
        .values(parent_id=parent_id, updated_at=now)
    )


# -- reading --------------------------------------------------------------------------------


async def get_incident(conn: AsyncConnection, incident_id: int) -> IncidentRecord | None:
    """One incident, or None."""
    row = (await conn.execute(sa.select(*_COLUMNS).where(incidents.c.id == incident_id))).first()
    return None if row is None else _record(row)


async def get_open_incident(conn: AsyncConnection, open_key: str) -> IncidentRecord | None:
    """The unresolved incident holding ``open_key``, or None."""
    row = (await conn.execute(sa.select(*_COLUMNS).where(incidents.c.open_key == open_key))).first()
    return None if row is None else _record(row)


async def latest_resolved(conn: AsyncConnection, spec: IncidentSpec) -> IncidentRecord | None:
    """The incident of ``spec``'s terminal (or fleet group) and rule that resolved last."""
    i = incidents.c
    same = sa.and_(i.rule_id == spec.rule_id, i.kind == spec.kind.value)
    if spec.kind is IncidentKind.FLEET:
        same = sa.and_(same, i.correlation == spec.correlation)
    else:
        same = sa.and_(same, i.terminal_id == spec.terminal_id)
    query = (
        sa.select(*_COLUMNS)
        .where(same, i.state == IncidentState.RESOLVED.value)
        .order_by(i.resolved_at.desc())
        .limit(1)
    )
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)


async def terminal_identity(conn: AsyncConnection, terminal_id: str) -> dict[str, str | None]:
    """What the registry says the terminal is, as an incident keeps it when it opens
    (``model``, ``firmware_version``, ``site_id``, ``merchant_id``); empty if unknown."""
    t = terminals.c
    query = sa.select(t.model, t.firmware_version, t.site_id, t.merchant_id).where(
        t.terminal_id == terminal_id
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return {}
    return {name: (value or None) for name, value in row._mapping.items()}


async def list_incidents(
    conn: AsyncConnection,
    *,
    states: Sequence[IncidentState] | None = None,
    kind: IncidentKind | None = None,
    terminal_id: str | None = None,
    rule_id: str | None = None,
    parent_id: int | None = None,
    merchant_id: str | None = None,
    site_id: str | None = None,
    severity: str | None = None,
    top_level: bool = False,
    limit: int = 100,
    before_id: int | None = None,
) -> list[IncidentRecord]:
    """Newest first; pass the last id seen as ``before_id`` for the next page.

    ``top_level`` leaves out incidents that belong to a fleet incident: staff see one
    item for thirty terminals.
    """
    i = incidents.c
    query = sa.select(*_COLUMNS).order_by(i.id.desc())
    if states:
        query = query.where(i.state.in_([s.value for s in states]))
    if kind is not None:
        query = query.where(i.kind == kind.value)
    if terminal_id is not None:
        query = query.where(i.terminal_id == terminal_id)
    if rule_id is not None:
        query = query.where(i.rule_id == rule_id)
    if parent_id is not None:
        query = query.where(i.parent_id == parent_id)
    if merchant_id is not None:
        query = query.where(i.merchant_id == merchant_id)
    if site_id is not None:
        query = query.where(i.site_id == site_id)
    if severity is not None:
        query = query.where(i.severity == severity)
    if top_level:
        query = query.where(i.parent_id.is_(None))
    if before_id is not None:
        query = query.where(i.id < before_id)
    # One row above a page is allowed: callers ask for it to learn whether more follow.
    query = query.limit(max(1, min(limit, MAX_PAGE + 1)))
    return [_record(row) for row in (await conn.execute(query)).all()]


async def list_notes(conn: AsyncConnection, incident_id: int) -> list[IncidentNote]:
    """The incident's timeline, oldest first."""
    query = (
        sa.select(incident_notes)
        .where(incident_notes.c.incident_id == incident_id)
        .order_by(incident_notes.c.ts, incident_notes.c.id)
    )
    return [
        IncidentNote.model_validate(dict(r._mapping)) for r in (await conn.execute(query)).all()
    ]


# -- playbook runs --------------------------------------------------------------------------


async def start_playbook_run(
    conn: AsyncConnection,
    *,
    terminal_id: str,
    playbook: str,
    started_by: str,
    now: datetime,
    deadline: datetime,
    incident_id: int | None = None,
) -> int:
    """Record a run as running, with its server-side deadline; returns its id."""
    stmt = (
        sa.insert(playbook_runs)
        .values(
            incident_id=incident_id,
            terminal_id=terminal_id,
            playbook=playbook,
            state=RunState.RUNNING.value,
            remedy=[],
            steps=[],
            started_by=started_by,
            started_at=now,
            deadline_at=deadline,
        )
        .returning(playbook_runs.c.id)
    )
    return int((await conn.execute(stmt)).scalar_one())


async def finish_playbook_run(
    conn: AsyncConnection,
    run_id: int,
    *,
    state: RunState,
    verdict: str,
    remedy: Sequence[str],
    steps: Sequence[dict[str, Any]],
    now: datetime,
) -> bool:
    """Give a running run its final state; False if it already had one."""
    stmt = (
        sa.update(playbook_runs)
        .where(playbook_runs.c.id == run_id, playbook_runs.c.state == RunState.RUNNING.value)
        .values(
            state=state.value,
            verdict=verdict,
            remedy=list(remedy),
            steps=list(steps),
            finished_at=now,
        )
    )
    return (await conn.execute(stmt)).rowcount == 1


async def expire_playbook_runs(conn: AsyncConnection, *, now: datetime) -> int:
    """Runs still ``running`` past their deadline (their process died) end ``timed_out``."""
    stmt = (
        sa.update(playbook_runs)
        .where(playbook_runs.c.state == RunState.RUNNING.value, playbook_runs.c.deadline_at < now)
        .values(
            state=RunState.TIMED_OUT.value,
            verdict="no final answer before the deadline",
            finished_at=now,
        )
    )
    return int((await conn.execute(stmt)).rowcount)


async def get_playbook_run(conn: AsyncConnection, run_id: int) -> PlaybookRun | None:
    """One run, or None."""
    row = (await conn.execute(sa.select(playbook_runs).where(playbook_runs.c.id == run_id))).first()
    return None if row is None else PlaybookRun.model_validate(dict(row._mapping))


async def list_playbook_runs(
    conn: AsyncConnection, incident_id: int, *, with_children: bool = False
) -> list[PlaybookRun]:
    """The runs linked to an incident (and, ``with_children``, to its children), oldest first.

    A fleet incident's playbooks run on its terminals and are linked to their incidents.
    """
    linked = playbook_runs.c.incident_id == incident_id
    if with_children:
        children = sa.select(incidents.c.id).where(incidents.c.parent_id == incident_id)
        linked = sa.or_(linked, playbook_runs.c.incident_id.in_(children.scalar_subquery()))
    query = sa.select(playbook_runs).where(linked).order_by(playbook_runs.c.id)
    return [PlaybookRun.model_validate(dict(r._mapping)) for r in (await conn.execute(query)).all()]
