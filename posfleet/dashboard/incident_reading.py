"""What the incident pages show, read from the store in one place per page.

The page handlers parse the request, call one function here and render the result.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.paging_cursor import PagingCursors
from posfleet.store.accounts import Role
from posfleet.store.cases import CaseLinkKind, CaseRecord, cases_linked_to
from posfleet.store.incidents import (
    IncidentKind,
    IncidentNote,
    IncidentRecord,
    IncidentState,
    PlaybookRun,
    get_incident,
    list_incidents,
    list_notes,
)
from posfleet.store.schema import incident_notes, incidents, playbook_runs, users
from posfleet.store.terminals import TerminalRecord, get_terminal

PAGE_SIZE = 50
MAX_CHILDREN = 500
MAX_RUNS = 200
MAX_STAFF = 500
UNRESOLVED = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)
# -- visible text (parameter errors) --------------------------------------------------
BAD_STATE = "state is open, acknowledged or resolved"
BAD_ID = "incident id {raw!r} must be a number"

INCIDENTS_SCOPE = "incidents"
"""The list name the cursors are signed for: the API's list and this page share them."""

STAFF_ROLES = tuple(role for role in Role if role.permits(Role.SUPPORT))
"""Roles whose users can take an incident: the assignee choices."""


@dataclass(frozen=True)
class IncidentQuery:
    """The list page's filter and position: ``state`` None means open or acknowledged."""

    state: IncidentState | None = None
    before: int | None = None
    """The id the page starts below (decoded from the signed ``before`` cursor)."""


@dataclass(frozen=True)
class ChildSummary:
    """A fleet incident's terminals at a glance, resolved ones included."""

    total: int
    unresolved: int
    occurrences: int
    """Occurrences summed over every terminal."""
    site_id: str | None
    """The site every terminal shares; None when they differ or one has none."""
    merchant_id: str | None
    """The merchant every terminal shares; None when they differ or one has none."""
    merchants: int
    """How many different merchants the terminals belong to."""


def _shared(values: Sequence[str | None]) -> str | None:
    distinct = set(values)
    if len(distinct) != 1:
        return None
    return distinct.pop()


def summarise_children(children: Iterable[IncidentRecord]) -> ChildSummary:
    """Count, open count, summed occurrences and the identity a fleet's terminals share."""
    rows = list(children)
    return ChildSummary(
        total=len(rows),
        unresolved=sum(1 for row in rows if row.state in UNRESOLVED),
        occurrences=sum(row.occurrences for row in rows),
        site_id=_shared([row.site_id for row in rows]),
        merchant_id=_shared([row.merchant_id for row in rows]),
        merchants=len({row.merchant_id for row in rows if row.merchant_id}),
    )


@dataclass(frozen=True)
class IncidentRow:
    """One top-level incident and, for a fleet incident, a summary of its terminals."""

    incident: IncidentRecord
    children: ChildSummary | None


@dataclass(frozen=True)
class IncidentPage:
    """One page of the list; ``next`` is the signed cursor of the next page, if any."""

    rows: list[IncidentRow]
    next: str | None


@dataclass(frozen=True)
class RunView:
    """A playbook run and its verdict: ``healthy`` None while running or when unknown."""

    run: PlaybookRun
    healthy: bool | None


@dataclass(frozen=True)
class IncidentDetail:
    """Everything the detail page shows about one incident."""

    incident: IncidentRecord
    terminal: TerminalRecord | None
    notes: list[IncidentNote]
    runs: list[RunView]
    """The incident's playbook runs (a fleet incident's: those on its terminals), oldest first."""
    children: list[IncidentRecord]
    summary: ChildSummary | None
    """For a fleet incident, its terminals at a glance."""
    cases: list[CaseRecord]
    """The merchant cases this incident is linked to, newest first."""


def parse_incident_query(params: Mapping[str, str], cursors: PagingCursors) -> IncidentQuery:
    """The list query from URL parameters; :class:`InvalidParameterError` on nonsense.

    ``before`` is the ``next`` cursor of the previous page, checked with ``cursors``.
    """
    raw_state = params.get("state") or None
    state = None
    if raw_state is not None:
        try:
            state = IncidentState(raw_state)
        except ValueError:
            raise InvalidParameterError("state", BAD_STATE) from None
    before = cursors.row_id(INCIDENTS_SCOPE, params.get("before") or None, "before")
    return IncidentQuery(state=state, before=before)


def parse_incident_id(raw: str) -> int:
    """An incident id from a URL segment; :class:`InvalidParameterError` unless a number."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise InvalidParameterError("incident_id", BAD_ID.format(raw=raw))
    return int(raw)


async def _child_summaries(
    conn: AsyncConnection, parent_ids: Sequence[int]
) -> dict[int, ChildSummary]:
    if not parent_ids:
        return {}
    i = incidents.c
    query = sa.select(*(incidents.c[name] for name in IncidentRecord.model_fields)).where(
        i.parent_id.in_(list(parent_ids))
    )
    grouped: dict[int, list[IncidentRecord]] = {parent: [] for parent in parent_ids}
    for row in (await conn.execute(query)).all():
        record = IncidentRecord.model_validate(dict(row._mapping))
        if record.parent_id is not None:
            grouped[record.parent_id].append(record)
    return {parent: summarise_children(rows) for parent, rows in grouped.items()}


async def fetch_incident_page(
    conn: AsyncConnection, query: IncidentQuery, cursors: PagingCursors
) -> IncidentPage:
    """Top-level incidents matching ``query``, newest first, one page."""
    states = [query.state] if query.state is not None else list(UNRESOLVED)
    # One more than a page tells whether a next page exists without counting.
    found = await list_incidents(
        conn, states=states, top_level=True, limit=PAGE_SIZE + 1, before_id=query.before
    )
    shown = found[:PAGE_SIZE]
    summaries = await _child_summaries(
        conn, [record.id for record in shown if record.kind is IncidentKind.FLEET]
    )
    rows = [IncidentRow(record, summaries.get(record.id)) for record in shown]
    more = len(found) > PAGE_SIZE
    return IncidentPage(rows, cursors.id_cursor(INCIDENTS_SCOPE, shown[-1].id) if more else None)


async def _runs(conn: AsyncConnection, incident_ids: Sequence[int]) -> list[RunView]:
    """The runs linked to ``incident_ids``, oldest first, each with its verdict's health."""
    query = (
        sa.select(playbook_runs)
        .where(playbook_runs.c.incident_id.in_(list(incident_ids)))
        .order_by(playbook_runs.c.id.desc())
        .limit(MAX_RUNS)
    )
    runs = [
        PlaybookRun.model_validate(dict(row._mapping)) for row in (await conn.execute(query)).all()
    ]
    if not runs:
        return []
    # The runner writes the verdict's health on the playbook note it leaves on the incident.
    n = incident_notes.c
    notes = await conn.execute(
        sa.select(n.detail).where(n.incident_id.in_(list(incident_ids)), n.kind == "playbook")
    )
    healthy: dict[int, bool] = {}
    for (detail,) in notes.all():
        if isinstance(detail, dict) and isinstance(detail.get("healthy"), bool):
            healthy[int(detail.get("run_id", 0))] = bool(detail["healthy"])
    return [RunView(run, healthy.get(run.id)) for run in reversed(runs)]


async def fetch_staff(conn: AsyncConnection) -> list[str]:
    """User names an incident can be assigned to: enabled users of support rank or above."""
    u = users.c
    query = (
        sa.select(u.username)
        .where(u.disabled.is_(False), u.role.in_([role.value for role in STAFF_ROLES]))
        .order_by(u.username)
        .limit(MAX_STAFF)
    )
    return [str(name) for name in (await conn.execute(query)).scalars()]


async def fetch_incident_detail(conn: AsyncConnection, incident_id: int) -> IncidentDetail | None:
    """The incident with its terminal, timeline, playbook runs and children; None if absent."""
    record = await get_incident(conn, incident_id)
    if record is None:
        return None
    terminal = await get_terminal(conn, record.terminal_id) if record.terminal_id else None
    children = (
        await list_incidents(conn, parent_id=incident_id, limit=MAX_CHILDREN)
        if record.kind is IncidentKind.FLEET
        else []
    )
    return IncidentDetail(
        incident=record,
        terminal=terminal,
        notes=await list_notes(conn, incident_id),
        runs=await _runs(conn, [incident_id, *(child.id for child in children)]),
        children=children,
        summary=summarise_children(children) if record.kind is IncidentKind.FLEET else None,
        cases=await cases_linked_to(conn, CaseLinkKind.INCIDENT, incident_id),
    )
