"""``/api/v1/terminals``: the fleet registry as JSON, for automation and the dashboard."""

from __future__ import annotations

import pydantic
from aiohttp import web

from posfleet.contract import ContractError, validate_terminal_id
from posfleet.dashboard.access import requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError
from posfleet.dashboard.terminal_listing import fetch_terminal_page, parse_terminal_query
from posfleet.store.accounts import Role
from posfleet.store.terminals import get_terminal


def json_model(model: pydantic.BaseModel, status: int = 200) -> web.Response:
    """A JSON response serialised by the model itself (the model is the schema)."""
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


@requires(Role.VIEWER)
async def list_terminals_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals``: one page of terminals.

    Parameters: ``online``, ``model``, ``firmware``, ``merchant``, ``site``, ``q`` (free
    text), ``sort``, ``limit`` and ``after`` (the ``next`` cursor of the previous page).
    """
    query = parse_terminal_query(request.query)
    async with request.app[ENGINE_KEY].connect() as conn:
        page = await fetch_terminal_page(conn, query)
    return json_model(page)


@requires(Role.VIEWER)
async def get_terminal_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}``: one terminal, or 404."""
    terminal_id = request.match_info["terminal_id"]
    try:
        validate_terminal_id(terminal_id)
    except ContractError as exc:
        raise InvalidParameterError("terminal_id", str(exc)) from None
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_terminal(conn, terminal_id)
    if record is None:
        raise NotFoundError(f"no terminal {terminal_id!r} has reported to this centre")
    return json_model(record)


def add_routes(app: web.Application) -> None:
    """Register the terminal endpoints."""
    app.router.add_get("/api/v1/terminals", list_terminals_endpoint)
    app.router.add_get("/api/v1/terminals/{terminal_id}", get_terminal_endpoint)
