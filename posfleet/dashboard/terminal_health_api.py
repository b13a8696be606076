"""``/api/v1/terminals/{id}/health`` and ``.../charts``: the terminal page's figures as JSON.

The same models the page draws: the latest health laid out item by item with its class,
and the hourly chart series over 24 hours or 7 days.
"""

from __future__ import annotations

import pydantic
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.dashboard.access import requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import NotFoundError
from posfleet.dashboard.json_bodies import json_model
from posfleet.dashboard.query_params import path_terminal_id, refuse_unknown
from posfleet.dashboard.terminal_charts import (
    ChartPeriod,
    TerminalCharts,
    fetch_charts,
    parse_period,
)
from posfleet.dashboard.terminal_health_view import HealthLayout, health_layout
from posfleet.store.accounts import Role
from posfleet.store.terminals import TerminalRecord, get_terminal


class ChartsQuery(pydantic.BaseModel):
    """The query of ``GET /api/v1/terminals/{id}/charts``."""

    period: ChartPeriod = ChartPeriod.DAY
    """``24h`` (the default) or ``7d``."""


async def _known(conn: AsyncConnection, terminal_id: str) -> TerminalRecord:
    record = await get_terminal(conn, terminal_id)
    if record is None:
        raise NotFoundError(f"no terminal {terminal_id!r} has reported to this centre")
    return record


@api_operation(
    "The terminal's latest health, item by item, each ok, warning, fault or unknown",
    tag="terminals",
    response=HealthLayout,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def terminal_health_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}/health``: the latest report laid out."""
    refuse_unknown(request.query, ())
    terminal_id = path_terminal_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await _known(conn, terminal_id)
    return json_model(health_layout(terminal_id, record.health, record.health_at, utcnow().date()))


@api_operation(
    "The terminal's hourly health figures over 24 hours or 7 days, from the rollups",
    tag="terminals",
    response=TerminalCharts,
    query=ChartsQuery,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def terminal_charts_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}/charts?period=24h|7d``."""
    refuse_unknown(request.query, tuple(ChartsQuery.model_fields))
    period = parse_period(request.query)
    terminal_id = path_terminal_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        await _known(conn, terminal_id)
        charts = await fetch_charts(conn, terminal_id, period, utcnow())
    return json_model(charts)


def add_routes(app: web.Application) -> None:
    """Register the terminal health and charts endpoints."""
    app.router.add_get("/api/v1/terminals/{terminal_id}/health", terminal_health_endpoint)
    app.router.add_get("/api/v1/terminals/{terminal_id}/charts", terminal_charts_endpoint)
