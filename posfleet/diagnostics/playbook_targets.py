"""Which terminals a playbook started from an incident runs on.

A terminal incident's playbook runs on its terminal. A fleet incident has no terminal of
its own: its playbook runs on the terminals still affected (every one of them, or one that
staff choose), each run recorded on that terminal's own incident. The incident page and
the API both ask here, so they offer and accept the same terminals.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.diagnostics.errors import IncidentNotFoundError, PlaybookTargetError
from posfleet.store.incidents import (
    MAX_PAGE,
    IncidentKind,
    IncidentRecord,
    IncidentState,
    get_incident,
    list_incidents,
)

ALL_TARGETS = "*"
"""The terminal choice that means every terminal the playbook can run on."""

# -- visible text (why a choice is refused) -------------------------------------------
NOT_AFFECTED = "terminal {terminal!r} is not one of this fleet incident's terminals"
NOT_ITS_TERMINAL = "terminal {terminal!r} is not this incident's terminal ({own})"
NO_TERMINAL = "incident #{id} has no terminal to run a playbook on"

_UNRESOLVED = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)


def fleet_playbook_terminals(children: Sequence[IncidentRecord]) -> list[str]:
    """A fleet incident's terminals a playbook runs on: the affected ones, else all.

    Once every terminal has recovered, staff may still check any of them.
    """
    affected = [c.terminal_id for c in children if c.terminal_id and c.state in _UNRESOLVED]
    return affected or [c.terminal_id for c in children if c.terminal_id]


async def playbook_targets(
    conn: AsyncConnection, incident_id: int, chosen: str | None = None
) -> list[tuple[str, int]]:
    """``(terminal_id, incident_id)`` pairs a playbook started on ``incident_id`` runs on.

    ``chosen`` None, empty or :data:`ALL_TARGETS` means every such terminal; otherwise it
    must be one of them. Raises :class:`IncidentNotFoundError` for an unknown incident and
    :class:`PlaybookTargetError` for a terminal the playbook cannot run on from here.
    """
    record = await get_incident(conn, incident_id)
    if record is None:
        raise IncidentNotFoundError(incident_id)
    everyone = chosen in (None, "", ALL_TARGETS)
    if record.kind is not IncidentKind.FLEET:
        if record.terminal_id is None:
            raise PlaybookTargetError(NO_TERMINAL.format(id=incident_id), terminal=chosen)
        if not everyone and chosen != record.terminal_id:
            message = NOT_ITS_TERMINAL.format(terminal=chosen, own=record.terminal_id)
            raise PlaybookTargetError(message, terminal=chosen)
        return [(record.terminal_id, incident_id)]
    children = await list_incidents(conn, parent_id=incident_id, limit=MAX_PAGE)
    allowed = set(fleet_playbook_terminals(children))
    # A terminal's unresolved incident takes the run, else its newest one (children come
    # newest first; a stable sort keeps that order within each state).
    by_terminal: dict[str, int] = {}
    for child in sorted(children, key=lambda c: c.state not in _UNRESOLVED):
        if child.terminal_id in allowed:
            by_terminal.setdefault(child.terminal_id, child.id)
    if not by_terminal:
        raise PlaybookTargetError(NO_TERMINAL.format(id=incident_id), terminal=chosen)
    if everyone:
        return list(by_terminal.items())
    if chosen not in by_terminal:
        raise PlaybookTargetError(NOT_AFFECTED.format(terminal=chosen), terminal=chosen)
    return [(chosen, by_terminal[chosen])]
