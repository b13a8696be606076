"""The terminal page's cases panel: the terminal's cases, "Open a case", and one-click
links of its open incidents and recent commands to its newest case that is not closed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.access import principal
from posfleet.dashboard.case_views import NEW_CASE_PATH, labels
from posfleet.dashboard.terminal_panels import TerminalPanel, add_panel
from posfleet.store.accounts import Role
from posfleet.store.cases import CaseFilter, CaseLinkKind, CaseState, list_case_links, list_cases
from posfleet.store.incidents import IncidentState, list_incidents
from posfleet.store.terminal_commands import list_commands

PANEL_NAME = "cases"
PANEL_ORDER = 60
"""After the page's own sections (10 to 50): the case comes once the problem is seen."""
CASES_SHOWN = 10
COMMANDS_OFFERED = 5


async def load_cases_panel(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The panel's context for one terminal (a few small queries per render)."""
    cases = await list_cases(conn, CaseFilter(terminal_id=terminal_id), limit=CASES_SHOWN)
    link_case = next((c for c in cases if c.state is not CaseState.CLOSED), None)
    incidents: list[Any] = []
    commands: list[Any] = []
    if link_case is not None:
        linked = {(k.kind, k.ref) for k in await list_case_links(conn, link_case.id)}
        open_states = [IncidentState.OPEN, IncidentState.ACKNOWLEDGED]
        incidents = [
            i
            for i in await list_incidents(
                conn, terminal_id=terminal_id, states=open_states, limit=20
            )
            if (CaseLinkKind.INCIDENT, str(i.id)) not in linked
        ]
        commands = [
            c
            for c in await list_commands(conn, terminal_id, limit=COMMANDS_OFFERED)
            if (CaseLinkKind.COMMAND, c.id) not in linked
        ]
    return {
        **labels(),
        "cases": cases,
        "link_case": link_case,
        "incidents": incidents,
        "commands": commands,
        "can_act": principal(request).role.permits(Role.SUPPORT),
        "new_case_url": f"{NEW_CASE_PATH}?{urlencode({'terminal': terminal_id})}",
        "back_path": f"/terminals/{terminal_id}",
    }


def add_cases_panel(app: web.Application) -> None:
    """Show the cases panel on every terminal's page."""
    add_panel(app, TerminalPanel(PANEL_NAME, "panel_cases.html", load_cases_panel, PANEL_ORDER))
