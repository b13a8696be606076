"""``/``: the fleet list page, and the fragment its script polls to stay current."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.fleet_summary import count_terminals, open_incidents_by_terminal
from posfleet.dashboard.fleet_view import FleetSection, fleet_section, list_link, list_params
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.templating import render_fragment, render_page
from posfleet.dashboard.terminal_listing import (
    MAX_FILTER_CHARS,
    TerminalQuery,
    fetch_terminal_page,
    parse_terminal_query,
)
from posfleet.store.accounts import Role

FLEET_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}fleet"
_FORM_FIELDS = ("q", "model", "firmware", "merchant", "site")
"""The filters the page's form shows as fields; the others travel as hidden inputs."""


async def _section(query: TerminalQuery, request: web.Request) -> FleetSection:
    async with request.app[ENGINE_KEY].connect() as conn:
        terminals = await fetch_terminal_page(conn, query, cursors(request.app))
        counts = await count_terminals(conn)
        matching = (
            await count_terminals(conn, query.where, online=query.online)
            if query.narrowed
            else None
        )
        incidents = await open_incidents_by_terminal(
            conn, [record.terminal_id for record in terminals.items]
        )
    return fleet_section(terminals, counts, query, utcnow(), matching=matching, incidents=incidents)


def _form(query: TerminalQuery) -> dict[str, Any]:
    params = list_params(query)
    return {
        "form": {name: params.get(name, "") for name in _FORM_FIELDS},
        "hidden": [(n, v) for n, v in params.items() if n not in _FORM_FIELDS],
        "clear_href": list_link(query, q=None),
        "max_chars": MAX_FILTER_CHARS,
    }


@requires(Role.VIEWER)
async def fleet_overview(request: web.Request) -> web.Response:
    """``GET /``: the terminals with their presence and latest health, refreshed live.

    Takes the fleet list's filters (``q``, ``online``, ``faulty``, ``model``, ``firmware``,
    ``merchant``, ``site``), ``sort``, ``limit`` and the ``after`` cursor.
    """
    query = parse_terminal_query(request.query, cursors(request.app))
    context = {
        "section": await _section(query, request),
        # live-section.js adds the page's own query string to the fragment's URL.
        "refresh_url": FLEET_FRAGMENT_PATH,
        **_form(query),
    }
    return render_page(request, "fleet.html", context, scripts=["live-section.js"])


@requires(Role.VIEWER)
async def fleet_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/fleet``: the overview's live section alone, for the refresh script."""
    section = await _section(parse_terminal_query(request.query, cursors(request.app)), request)
    return render_fragment(request, "fleet_section.html", {"section": section})


def add_routes(app: web.Application) -> None:
    """Register the overview page and its fragment."""
    app.router.add_get("/", fleet_overview)
    app.router.add_get(FLEET_FRAGMENT_PATH, fleet_fragment)
