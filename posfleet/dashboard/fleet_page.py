"""``/``: the fleet overview page, and the fragment its script polls to stay current."""

from __future__ import annotations

from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.csrf import csrf_token, session_binding
from posfleet.dashboard.fleet_summary import count_terminals
from posfleet.dashboard.fleet_view import fleet_section
from posfleet.dashboard.markup import Markup
from posfleet.dashboard.page_layout import live_page
from posfleet.dashboard.terminal_listing import fetch_terminal_page, parse_terminal_query
from posfleet.store.accounts import Role

FLEET_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}fleet"


async def _section(request: web.Request) -> Markup:
    query = parse_terminal_query(request.query)
    async with request.app[ENGINE_KEY].connect() as conn:
        terminals = await fetch_terminal_page(conn, query)
        counts = await count_terminals(conn)
    return fleet_section(terminals, counts, query, utcnow())


@requires(Role.VIEWER)
async def fleet_overview(request: web.Request) -> web.Response:
    """``GET /``: every terminal with its presence and latest health, refreshed live."""
    document = live_page(
        "Fleet",
        await _section(request),
        refresh_url=FLEET_FRAGMENT_PATH,
        user=principal(request),
        csrf_token=csrf_token(request, session_binding(request)),
    )
    return web.Response(text=document, content_type="text/html")


@requires(Role.VIEWER)
async def fleet_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/fleet``: the overview's table alone, for the refresh script."""
    return web.Response(text=await _section(request), content_type="text/html")


def add_routes(app: web.Application) -> None:
    """Register the overview page and its fragment."""
    app.router.add_get("/", fleet_overview)
    app.router.add_get(FLEET_FRAGMENT_PATH, fleet_fragment)
