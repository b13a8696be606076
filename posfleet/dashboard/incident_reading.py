"""What the incident pages show, read from the store in one place per page.

The page handlers parse the request, call one function here and render the result.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.store.incidents import (
    IncidentKind,
    IncidentNote,
    IncidentRecord,
    IncidentState,
    PlaybookRun,
    count_unresolved_children,
    get_incident,
    list_incidents,
    list_notes,
    list_playbook_runs,
)
from posfleet.store.terminals import TerminalRecord, get_terminal

PAGE_SIZE = 50
MAX_CHILDREN = 500
UNRESOLVED = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)


@dataclass(frozen=True)
class IncidentQuery:
    """The list page's filter and position: ``state`` None means open or acknowledged."""

    state: IncidentState | None = None
    before: int | None = None


@dataclass(frozen=True)
class IncidentRow:
    """One top-level incident and, for a fleet incident, how many terminals it still holds."""

    incident: IncidentRecord
    open_children: int | None


@dataclass(frozen=True)
class IncidentPage:
    """One page of the list; ``next_before`` is the cursor of the next page, if any."""

    rows: list[IncidentRow]
    next_before: int | None


@dataclass(frozen=True)
class IncidentDetail:
    """Everything the detail page shows about one incident."""

    incident: IncidentRecord
    terminal: TerminalRecord | None
    notes: list[IncidentNote]
    runs: list[PlaybookRun]
    children: list[IncidentRecord]


def parse_incident_query(params: Mapping[str, str]) -> IncidentQuery:
    """The list query from URL parameters; :class:`InvalidParameterError` on nonsense."""
    raw_state = params.get("state") or None
    state = None
    if raw_state is not None:
        try:
            state = IncidentState(raw_state)
        except ValueError:
            raise InvalidParameterError(
                "state", "state is open, acknowledged or resolved"
            ) from None
    raw_before = params.get("before") or None
    if raw_before is not None and (not raw_before.isdigit() or len(raw_before) > 18):
        raise InvalidParameterError("before", "before must be an incident id")
    return IncidentQuery(state=state, before=int(raw_before) if raw_before else None)


def parse_incident_id(raw: str) -> int:
    """An incident id from a URL segment; :class:`InvalidParameterError` unless a number."""
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidParameterError("incident_id", f"incident id {raw!r} must be a number")
    return int(raw)


async def fetch_incident_page(conn: AsyncConnection, query: IncidentQuery) -> IncidentPage:
    """Top-level incidents matching ``query``, newest first, one page."""
    states = [query.state] if query.state is not None else list(UNRESOLVED)
    # One more than a page tells whether a next page exists without counting.
    found = await list_incidents(
        conn, states=states, top_level=True, limit=PAGE_SIZE + 1, before_id=query.before
    )
    shown = found[:PAGE_SIZE]
    rows = [
        IncidentRow(
            record,
            await count_unresolved_children(conn, record.id)
            if record.kind is IncidentKind.FLEET
            else None,
        )
        for record in shown
    ]
    return IncidentPage(rows, shown[-1].id if len(found) > PAGE_SIZE else None)


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
        runs=await list_playbook_runs(conn, incident_id),
        children=children,
    )
