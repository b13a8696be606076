"""``/terminals/{id}``: one terminal's page, built from panels, and its live stream.

The page is a frame (heading, online badge) around every registered terminal panel
(:mod:`posfleet.dashboard.terminal_panels`): its own (summary, health, charts,
incidents, firmware history) and those other features add (commands, backups, cases).
``/terminals/{id}/live`` streams the panels that change. An id the centre has never
heard from gets a 404 page that offers a way on, never a dead end.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.dashboard.access import requires
from posfleet.dashboard.app_keys import ENGINE_KEY, REJECTIONS_KEY
from posfleet.dashboard.errors import NotFoundError
from posfleet.dashboard.templating import _, render_page
from posfleet.dashboard.terminal_charts import (
    CHART_LIBRARY_SCRIPT,
    chart_library_present,
    fetch_charts,
    parse_period,
)
from posfleet.dashboard.terminal_health_view import health_layout
from posfleet.dashboard.terminal_live import install_live_streams, stream_panels
from posfleet.dashboard.terminal_panel_rendering import render_panels
from posfleet.dashboard.terminal_panels import TerminalPanel, add_panel
from posfleet.dashboard.terminal_view import (
    HEALTH_KIND,
    UNRESOLVED_STATES,
    action_rows,
    charts_view,
    incident_rows,
    offline_reason,
    registry_facts,
)
from posfleet.firmware.action_records import list_actions
from posfleet.store.accounts import Role
from posfleet.store.incidents import IncidentState, list_incidents
from posfleet.store.terminals import TerminalRecord, get_terminal

TERMINALS_PATH = "/terminals"
RECENT_RESOLVED = 5
"""How many resolved incidents the page lists under the open ones."""
MAX_OPEN = 100
"""More open incidents than this on one terminal would be a rule gone wrong; show the newest."""
FIRMWARE_HISTORY = 10
"""How many of the terminal's firmware Actions the page lists, newest first."""
MAX_SEARCH_CHARS = 128

CHARTS_LIBRARY_KEY = web.AppKey("terminal_chart_library", bool)
"""Whether the charting library was found when the app was built."""


@dataclass(frozen=True, slots=True)
class _LoadedTerminal:
    conn: AsyncConnection
    record: TerminalRecord | None


_LOADED_KEY = web.RequestKey("terminal_page_record", _LoadedTerminal)


async def terminal_of(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> TerminalRecord | None:
    """The terminal's record, read once per connection however many panels ask for it.

    The live stream opens a connection per round, so each round reads it afresh.
    """
    loaded = request.get(_LOADED_KEY)
    if loaded is None or loaded.conn is not conn or loaded.record is None:
        loaded = _LoadedTerminal(conn, await get_terminal(conn, terminal_id))
        request[_LOADED_KEY] = loaded
    return loaded.record


async def _terminal_or_404(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> TerminalRecord:
    record = await terminal_of(conn, terminal_id, request)
    if record is None:
        message = _("no terminal %(id)r has reported to this centre")
        raise NotFoundError(message % {"id": terminal_id})
    return record


# -- the page's own panels ----------------------------------------------------------------


async def load_summary(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The terminal's identity, online state, last report and registry facts."""
    record = await _terminal_or_404(conn, terminal_id, request)
    return {
        "terminal": record,
        "offline_reason": None if record.online else offline_reason(record.offline_reason),
        "facts": registry_facts(record),
        "apps": sorted(record.app_versions.items()),
    }


async def load_health(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The latest health report laid out item by item."""
    record = await _terminal_or_404(conn, terminal_id, request)
    layout = health_layout(terminal_id, record.health, record.health_at, utcnow().date())
    return {"health": layout, "health_kind": HEALTH_KIND}


async def load_charts(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The chart set of the period the page's ``?period=`` asks for (24 h by default)."""
    period = parse_period(request.query)
    charts = await fetch_charts(conn, terminal_id, period, utcnow())
    return {
        "charts": charts_view(charts),
        "chart_library": request.app.get(CHARTS_LIBRARY_KEY, False),
    }


async def load_incidents(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The terminal's open incidents and its most recently resolved ones."""
    opened = await list_incidents(
        conn, states=list(UNRESOLVED_STATES), terminal_id=terminal_id, limit=MAX_OPEN
    )
    resolved = await list_incidents(
        conn, states=[IncidentState.RESOLVED], terminal_id=terminal_id, limit=RECENT_RESOLVED
    )
    return {"open_incidents": incident_rows(opened), "resolved_incidents": incident_rows(resolved)}


async def load_firmware(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The terminal's firmware Actions (pushes and rollouts), newest first."""
    actions = await list_actions(conn, terminal_id=terminal_id, limit=FIRMWARE_HISTORY)
    return {"actions": action_rows(actions)}


OWN_PANELS = (
    TerminalPanel("summary", "panel_summary.html", load_summary, order=10),
    TerminalPanel("health", "panel_health.html", load_health, order=20),
    TerminalPanel("charts", "panel_charts.html", load_charts, order=30),
    TerminalPanel("incidents", "panel_incidents.html", load_incidents, order=40),
    TerminalPanel("firmware", "panel_firmware.html", load_firmware, order=50),
)


# -- routes -------------------------------------------------------------------------------


def _unknown(request: web.Request, terminal_id: str) -> web.Response:
    request.app[REJECTIONS_KEY].count("not_found", f"GET {request.path}: unknown terminal")
    stripped = terminal_id.strip()
    search = (
        "/?" + urlencode({"q": terminal_id}) if 1 <= len(stripped) <= MAX_SEARCH_CHARS else None
    )
    context = {"terminal_id": terminal_id, "search_url": search}
    return render_page(request, "terminal_unknown.html", context, status=404)


@requires(Role.VIEWER)
async def terminal_detail(request: web.Request) -> web.Response:
    """``GET /terminals/{terminal_id}``: the terminal's page, or a 404 page with a way back."""
    terminal_id = request.match_info["terminal_id"]
    period = parse_period(request.query)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await terminal_of(conn, terminal_id, request)
        if record is None:
            return _unknown(request, terminal_id)
        panels = await render_panels(conn, terminal_id, request)
    scripts = ["terminal.js"]
    if request.app.get(CHARTS_LIBRARY_KEY, False):
        scripts.insert(0, CHART_LIBRARY_SCRIPT)
    live_url = f"{TERMINALS_PATH}/{terminal_id}/live?" + urlencode({"period": period.value})
    context = {"terminal": record, "panels": panels, "live_url": live_url}
    return render_page(request, "terminal.html", context, scripts=scripts)


@requires(Role.VIEWER)
async def terminal_live(request: web.Request) -> web.StreamResponse:
    """``GET /terminals/{terminal_id}/live``: the page's changed panels as Server-Sent Events."""
    terminal_id = request.match_info["terminal_id"]
    parse_period(request.query)
    async with request.app[ENGINE_KEY].connect() as conn:
        await _terminal_or_404(conn, terminal_id, request)
    return await stream_panels(request, terminal_id)


@requires(Role.VIEWER)
async def terminal_index(request: web.Request) -> web.Response:
    """``GET /terminals``: the terminals are listed on the fleet page, so go there."""
    query = f"?{request.query_string}" if request.query_string else ""
    raise web.HTTPSeeOther(f"/{query}")


def add_routes(app: web.Application) -> None:
    """Register the terminal page, its panels and live stream (``/terminals`` goes to the fleet)."""
    for panel in OWN_PANELS:
        add_panel(app, panel)
    app[CHARTS_LIBRARY_KEY] = chart_library_present()
    install_live_streams(app)
    app.router.add_get(TERMINALS_PATH, terminal_index)
    app.router.add_get(f"{TERMINALS_PATH}/{{terminal_id}}", terminal_detail)
    app.router.add_get(f"{TERMINALS_PATH}/{{terminal_id}}/live", terminal_live)
