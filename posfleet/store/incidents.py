"""Incidents, their notes and playbook runs: the repository functions.

One open incident per (terminal, rule) holds by construction: an unresolved incident
carries an ``open_key`` under a unique constraint, and opening is an idempotent upsert
on that key. Every function takes an open connection and leaves the transaction to the
caller, except where a savepoint is needed to survive a lost race.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import incident_notes, incidents, playbook_runs
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
    """What :func:`open_incident` did."""

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


_UNRESOLVED = (IncidentState.OPEN.value, IncidentState.ACKNOWLEDGED.value)
_COLUMNS = [incidents.c[name] for name in IncidentRecord.model_fields]


def _record(row: sa.Row[Any]) -> IncidentRecord:
    return IncidentRecord.model_validate(dict(row._mapping))


# -- opening and resolving ------------------------------------------------------------------


async def open_incident(
    conn: AsyncConnection,
    spec: IncidentSpec,
    *,
    now: datetime,
    flap_window: timedelta = timedelta(minutes=15),
) -> tuple[int, OpenOutcome]:
    """Open ``spec``'s incident, or count another occurrence of the one already open.

    An incident of the same key resolved less than ``flap_window`` ago is reopened
    rather than duplicated. Safe under any concurrency: racing callers all end up on
    the same row, and exactly one of them gets ``OPENED`` (or ``REOPENED``).
    """
    key = spec.open_key
    touched = await _touch_open(conn, key, now)
    if touched is not None:
        return touched, OpenOutcome.ALREADY_OPEN
    if flap_window > timedelta(0):
        reopened = await _reopen_recent(conn, spec, key, now=now, since=now - flap_window)
        if reopened is not None:
            return reopened, OpenOutcome.REOPENED
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


async def _touch_open(conn: AsyncConnection, key: str, now: datetime) -> int | None:
    stmt = (
        sa.update(incidents)
        .where(incidents.c.open_key == key)
        .values(occurrences=incidents.c.occurrences + 1, last_seen_at=now)
        .returning(incidents.c.id)
    )
    found = (await conn.execute(stmt)).scalar()
    return None if found is None else int(found)


async def _reopen_recent(
    conn: AsyncConnection, spec: IncidentSpec, key: str, *, now: datetime, since: datetime
) -> int | None:
    i = incidents.c
    same = sa.and_(i.rule_id == spec.rule_id, i.kind == spec.kind.value)
    if spec.kind is IncidentKind.FLEET:
        same = sa.and_(same, i.correlation == spec.correlation)
    else:
        same = sa.and_(same, i.terminal_id == spec.terminal_id)
    latest = (
        sa.select(i.id)
        .where(same, i.state == IncidentState.RESOLVED.value, i.resolved_at >= since)
        .order_by(i.resolved_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    stmt = (
        sa.update(incidents)
        .where(i.id == latest)
        .values(
            state=IncidentState.OPEN.value,
            open_key=key,
            resolved_at=None,
            resolved_by=None,
            acknowledged_at=None,
            acknowledged_by=None,
            reopen_count=i.reopen_count + 1,
            occurrences=i.occurrences + 1,
            last_seen_at=now,
            updated_at=now,
            facts=spec.facts,
        )
        .returning(i.id)
    )
    try:
        # A savepoint: if another writer opened the key meanwhile, the unique
        # constraint rejects this reopen and the caller's upsert finds that row instead.
        async with conn.begin_nested():
            found = (await conn.execute(stmt)).scalar()
    except IntegrityError:
        return None
    return None if found is None else int(found)


async def resolve_open_incident(
    conn: AsyncConnection,
    open_key: str,
    *,
    now: datetime,
    by: str | None = None,
    resolution: str = "",
) -> int | None:
    """Resolve the unresolved incident holding ``open_key``; returns its id, if any."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.open_key == open_key)
        .values(
            state=IncidentState.RESOLVED.value,
            open_key=None,
            resolved_at=now,
            resolved_by=by,
            resolution=resolution,
            updated_at=now,
        )
        .returning(incidents.c.id)
    )
    found = (await conn.execute(stmt)).scalar()
    return None if found is None else int(found)


async def retarget_open_incident(
    conn: AsyncConnection, from_key: str, spec: IncidentSpec, *, now: datetime
) -> int | None:
    """Give the unresolved incident holding ``from_key`` to ``spec``'s rule (a reported
    fault its rule has taken over): the rule's texts, its key, the facts of both. Returns
    the incident's id; None when no incident holds ``from_key`` or ``spec``'s key is taken."""
    if await get_open_incident(conn, spec.open_key) is not None:
        return None
    # What the terminal is may have come in meanwhile (inventory rides the bulk lane).
    identity = {
        "model": spec.model,
        "firmware_version": spec.firmware_version,
        "site_id": spec.site_id,
        "merchant_id": spec.merchant_id,
    }
    stmt = (
        sa.update(incidents)
        .where(incidents.c.open_key == from_key)
        .values(
            open_key=spec.open_key,
            rule_id=spec.rule_id,
            title=spec.title,
            component=spec.component,
            severity=spec.severity,
            escalation=spec.escalation,
            cause=spec.cause,
            remedy=list(spec.remedy),
            last_seen_at=now,
            updated_at=now,
            **{name: value for name, value in identity.items() if value is not None},
        )
        .returning(incidents.c.id, incidents.c.facts)
    )
    row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    facts = {**(row.facts or {}), **spec.facts, "reported_as": from_key.rsplit("/", 1)[-1]}
    await conn.execute(sa.update(incidents).where(incidents.c.id == row.id).values(facts=facts))
    return int(row.id)


def terminal_open_key(terminal_id: str, rule_id: str) -> str:
    """The open key of a terminal's incident under ``rule_id``."""
    return f"{terminal_id}/{rule_id}"


# -- staff actions --------------------------------------------------------------------------


async def acknowledge_incident(
    conn: AsyncConnection, incident_id: int, *, by: str, now: datetime
) -> bool:
    """Open -> acknowledged; False if the incident is not open."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.state == IncidentState.OPEN.value)
        .values(
            state=IncidentState.ACKNOWLEDGED.value,
            acknowledged_at=now,
            acknowledged_by=by,
            updated_at=now,
        )
    )
    return (await conn.execute(stmt)).rowcount == 1


async def resolve_incident(
    conn: AsyncConnection, incident_id: int, *, by: str, now: datetime, resolution: str = ""
) -> bool:
    """Resolve by hand; False if it was already resolved (or does not exist)."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.state.in_(_UNRESOLVED))
        .values(
            state=IncidentState.RESOLVED.value,
            open_key=None,
            resolved_at=now,
            resolved_by=by,
            resolution=resolution,
            updated_at=now,
        )
    )
    return (await conn.execute(stmt)).rowcount == 1


async def assign_incident(
    conn: AsyncConnection, incident_id: int, assignee: str | None, *, now: datetime
) -> bool:
    """Assign to a staff member (None: unassign); False if there is no such incident."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.id == incident_id)
        .values(assignee=assignee, updated_at=now)
    )
    return (await conn.execute(stmt)).rowcount == 1


async def escalate_incident(
    conn: AsyncConnection, incident_id: int, to: str, *, now: datetime
) -> bool:
    """Record that the incident went to an on-site visit or a swap; False if resolved."""
    stmt = (
        sa.update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.state.in_(_UNRESOLVED))
        .values(escalated_to=to, updated_at=now)
    )
    return (await conn.execute(stmt)).rowcount == 1


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


async def count_unresolved_children(conn: AsyncConnection, parent_id: int) -> int:
    """How many children of a fleet incident are still open or acknowledged."""
    query = sa.select(sa.func.count()).where(
        incidents.c.parent_id == parent_id, incidents.c.state.in_(_UNRESOLVED)
    )
    return int((await conn.execute(query)).scalar_one())


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
