"""The overview page: the fleet at a glance (the landing page after login).

``/overview`` shows presence, faulty terminals, open incidents by severity, fleet
incidents, cases due, open rollouts, today's ingest and dead letters, the fleet by model
and firmware version, and incidents per day over 7 or 30 days (a chart and a table);
every count links to the list it counts. ``/fragments/overview`` is its live section,
which live-section.js polls; ``GET /api/v1/overview`` gives the same figures as JSON for
wallboards. The figures come from :func:`posfleet.store.fleet_overview.fleet_overview`
through a per-instance :class:`~posfleet.dashboard.overview_cache.SnapshotCache`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import Severity, utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, requires
from posfleet.dashboard.api_models import NoQuery
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.json_bodies import json_model
from posfleet.dashboard.overview_cache import FRESH_SECONDS, STALE_SECONDS, SnapshotCache
from posfleet.dashboard.query_params import refuse_unknown, shown, single
from posfleet.dashboard.templating import _, render_fragment, render_page
from posfleet.dashboard.terminal_charts import CHART_LIBRARY, CHART_LIBRARY_SCRIPT
from posfleet.store.accounts import Role
from posfleet.store.fleet_overview import FleetOverview, TerminalGroup, fleet_overview

OVERVIEW_PATH = "/overview"
OVERVIEW_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}overview"
OVERVIEW_API_PATH = "/api/v1/overview"
PERIODS = (7, 30)
"""The chart's choices, in days; the first is the default."""

OVERVIEW_CACHE_KEY: web.AppKey[SnapshotCache[FleetOverview]] = web.AppKey("overview_cache")
"""The instance's snapshot of the figures (replace it before the app starts to tune it)."""
_CHARTS_KEY = web.AppKey("overview_chart_library", bool)

_SEVERITY_LABELS = {
    Severity.CRITICAL: _("critical"),
    Severity.ERROR: _("error"),
    Severity.WARNING: _("warning"),
    Severity.INFO: _("info"),
}


@dataclass(frozen=True, slots=True)
class Tile:
    """One figure of the page and the list it counts (``href`` None: no list to open)."""

    label: str
    value: str
    href: str | None
    kind: str = ""
    """A badge class: ``ok``, ``bad``, ``warn`` or empty."""


def _fleet_link(**params: str) -> str:
    return "/?" + urlencode(params) if params else "/"


def _group_rows(groups: list[TerminalGroup], param: str) -> list[dict[str, Any]]:
    return [
        {
            "label": g.value if g.value is not None else _("not reported yet"),
            "code": g.value is not None,
            # The fleet list cannot filter for "no inventory yet": such a row has no link.
            "href": _fleet_link(**{param: g.value}) if g.value is not None else None,
            "online_href": _fleet_link(**{param: g.value, "online": "true"})
            if g.value is not None
            else None,
            "terminals": g.terminals,
            "online": g.online,
        }
        for g in groups
    ]


def _alert(count: int, kind: str) -> str:
    """``kind`` when there is something to look at, no colour for a zero."""
    return kind if count else ""


def _tiles(o: FleetOverview) -> dict[str, list[Tile]]:
    incidents = [
        Tile(
            _SEVERITY_LABELS[s.severity],
            str(s.count),
            "/incidents",
            _alert(s.count, "bad" if s.severity in (Severity.CRITICAL, Severity.ERROR) else ""),
        )
        for s in o.open_incidents
    ]
    incidents.append(Tile(_("fleet incidents"), str(o.fleet_incidents), "/incidents"))
    return {
        "fleet": [
            Tile(_("terminals"), str(o.terminals), "/"),
            Tile(_("online"), str(o.online), _fleet_link(online="true"), "ok"),
            Tile(
                _("offline"), str(o.offline), _fleet_link(online="false"), _alert(o.offline, "bad")
            ),
            Tile(_("faulty"), str(o.faulty), _fleet_link(faulty="true"), _alert(o.faulty, "warn")),
        ],
        "incidents": incidents,
        "work": [
            Tile(_("cases due today"), str(o.cases.due_today), "/cases?follow_up=due_today"),
            Tile(
                _("cases overdue"),
                str(o.cases.overdue),
                "/cases?follow_up=overdue",
                _alert(o.cases.overdue, "bad"),
            ),
            Tile(_("rollouts running"), str(o.rollouts.running), "/firmware"),
            Tile(
                _("rollouts paused"),
                str(o.rollouts.paused),
                "/firmware",
                _alert(o.rollouts.paused, "warn"),
            ),
            Tile(_("rollouts awaiting approval"), str(o.rollouts.awaiting_approval), "/firmware"),
        ],
        "ingest": [
            Tile(_("health reports today"), str(o.ingest.reports_today), None),
            Tile(_("per minute today"), f"{o.ingest.per_minute_today:g}", None),
            Tile(_("per minute, last hour"), f"{o.ingest.per_minute_last_hour:g}", None),
            Tile(
                _("dead letters today"),
                str(o.dead_letters_today),
                None,
                _alert(o.dead_letters_today, "bad"),
            ),
        ],
    }


def parse_days(query: MultiMapping[str]) -> int:
    """The chart's ``days``: 7 (the default) or 30."""
    raw = single(query, "days")
    if raw is None:
        return PERIODS[0]
    if raw not in {str(p) for p in PERIODS}:
        message = _("days must be 7 or 30, not %(v)s") % {"v": shown(raw)}
        raise InvalidParameterError("days", message)
    return int(raw)


def section_context(o: FleetOverview, days: int, chart_library: bool) -> dict[str, Any]:
    """What ``overview_section.html`` draws from the figures."""
    shown_days = o.incidents_per_day[-days:]
    return {
        "tiles": _tiles(o),
        "by_model": _group_rows(o.by_model, "model"),
        "by_firmware": _group_rows(o.by_firmware, "firmware"),
        "days": days,
        "periods": [(p, _("%(n)s days") % {"n": p}, f"?days={p}") for p in PERIODS],
        "chart": {
            "labels": [d.day.isoformat() for d in shown_days],
            "counts": [d.opened for d in shown_days],
            "total": sum(d.opened for d in shown_days),
            "rows": [(d.day.isoformat(), d.opened) for d in reversed(shown_days)],
        },
        "chart_library": chart_library,
        "generated_at": o.generated_at,
    }


async def _count(app: web.Application) -> FleetOverview:
    async with app[ENGINE_KEY].connect() as conn:
        return await fleet_overview(conn, utcnow())


def overview_snapshot(
    app: web.Application, *, fresh_for: float = FRESH_SECONDS, stale_for: float = STALE_SECONDS
) -> SnapshotCache[FleetOverview]:
    """The figures of ``app``'s database, kept as :class:`SnapshotCache` says."""
    return SnapshotCache(lambda: _count(app), fresh_for=fresh_for, stale_for=stale_for)


async def _section(request: web.Request) -> dict[str, Any]:
    refuse_unknown(request.query, ("days",))
    days = parse_days(request.query)
    figures = await request.app[OVERVIEW_CACHE_KEY].get()
    return section_context(figures, days, request.app[_CHARTS_KEY])


@requires(Role.VIEWER)
async def overview_page(request: web.Request) -> web.Response:
    """``GET /overview``: the fleet at a glance, refreshed live; ``days`` is 7 or 30."""
    context = {"section": await _section(request), "refresh_url": OVERVIEW_FRAGMENT_PATH}
    scripts = ["live-section.js", "overview.js"]
    if request.app[_CHARTS_KEY]:
        scripts.insert(0, CHART_LIBRARY_SCRIPT)
    return render_page(request, "overview.html", context, scripts=scripts)


@requires(Role.VIEWER)
async def overview_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/overview``: the page's live section alone, for the refresh script."""
    return render_fragment(request, "overview_section.html", {"section": await _section(request)})


@api_operation(
    "The fleet at a glance: presence, open incidents, cases, rollouts, ingest, history",
    tag="overview",
    response=FleetOverview,
    query=NoQuery,
)
@requires(Role.VIEWER)
async def overview_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/overview``: every figure of the overview page (30 days of history)."""
    refuse_unknown(request.query, ())
    return json_model(await request.app[OVERVIEW_CACHE_KEY].get())


async def _close_cache(app: web.Application) -> None:
    await app[OVERVIEW_CACHE_KEY].close()


def add_routes(app: web.Application) -> None:
    """Register the page, its live fragment and the API operation, and the snapshot."""
    app[OVERVIEW_CACHE_KEY] = overview_snapshot(app)
    # The terminal page logs how to install it when it is missing.
    app[_CHARTS_KEY] = CHART_LIBRARY.is_file()
    app.on_cleanup.append(_close_cache)
    app.router.add_get(OVERVIEW_PATH, overview_page)
    app.router.add_get(OVERVIEW_FRAGMENT_PATH, overview_fragment)
    app.router.add_get(OVERVIEW_API_PATH, overview_endpoint)
