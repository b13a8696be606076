"""``/healthz``: whether this dashboard instance can serve, for load balancers and probes."""

from __future__ import annotations

import logging

import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from posfleet.dashboard.access import public
from posfleet.dashboard.app_keys import ENGINE_KEY

log = logging.getLogger(__name__)


@public
async def healthz(request: web.Request) -> web.Response:
    """200 when the database answers, 503 otherwise (no details: it is unauthenticated)."""
    try:
        async with request.app[ENGINE_KEY].connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (SQLAlchemyError, OSError) as exc:
        log.warning("health check failed: database unreachable: %s", exc)
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


def add_routes(app: web.Application) -> None:
    """Register the health check."""
    app.router.add_get("/healthz", healthz)
