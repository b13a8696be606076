"""``/api/v1/terminals``: the fleet registry as JSON, for automation and the dashboard."""

from __future__ import annotations

from aiohttp import web
from multidict import MultiDict, MultiMapping

from posfleet.dashboard.access import requires
from posfleet.dashboard.api_models import NoQuery, TerminalIdPath, TerminalListQuery
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError
from posfleet.dashboard.json_bodies import json_model
from posfleet.dashboard.paging_cursor import PagingCursors, cursors
from posfleet.dashboard.query_params import path_terminal_id, refuse_unknown
from posfleet.dashboard.terminal_listing import (
    TerminalPage,
    TerminalQuery,
    fetch_terminal_page,
    parse_terminal_query,
)
from posfleet.store.accounts import Role
from posfleet.store.terminals import TerminalRecord, get_terminal

LIST_PARAMETERS = (
    "online",
    "model",
    "firmware_version",
    "merchant_id",
    "site_id",
    "faulty",
    "q",
    "sort",
    "limit",
    "after",
)
"""What ``GET /api/v1/terminals`` takes: the filters are named after the JSON fields."""

_LISTING_NAMES = {"firmware_version": "firmware", "merchant_id": "merchant", "site_id": "site"}
"""API name -> the fleet list's own (shorter) name; the short names keep working here too."""


def _listing_query(query: MultiMapping[str], signer: PagingCursors) -> TerminalQuery:
    """The fleet-list query for the API's parameters (the JSON field names)."""
    refuse_unknown(query, LIST_PARAMETERS, aliases=_LISTING_NAMES.values())
    renamed: MultiDict[str] = MultiDict()
    for name, value in query.items():
        renamed.add(_LISTING_NAMES.get(name, name), value)
    for api_name, short in _LISTING_NAMES.items():
        if api_name in query and short in query:
            raise InvalidParameterError(
                api_name, f"{api_name} and {short} are the same filter: give {api_name} once"
            )
    try:
        return parse_terminal_query(renamed, signer)
    except InvalidParameterError as exc:
        sent = next((a for a, s in _LISTING_NAMES.items() if s == exc.name), None)
        if sent is None or sent not in query:
            raise
        # Name the parameter as the client sent it, not as the fleet page calls it.
        raise InvalidParameterError(sent, exc.message.replace(exc.name, sent, 1)) from None


@api_operation("List terminals", tag="terminals", response=TerminalPage, query=TerminalListQuery)
@requires(Role.VIEWER)
async def list_terminals_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals``: one page of terminals.

    Parameters, the filters named after the JSON fields they match: ``online``,
    ``model``, ``firmware_version``, ``merchant_id``, ``site_id`` (exact matches; the
    fleet page's ``firmware``, ``merchant`` and ``site`` are accepted too), ``q`` (free
    text), ``sort``, ``limit`` and ``after`` (the ``next`` cursor of the previous page).
    Any other parameter is refused with a 400 naming it.
    """
    signer = cursors(request.app)
    query = _listing_query(request.query, signer)
    async with request.app[ENGINE_KEY].connect() as conn:
        page = await fetch_terminal_page(conn, query, signer)
    return json_model(page)


@api_operation(
    "Show a terminal",
    tag="terminals",
    response=TerminalRecord,
    query=NoQuery,
    path=TerminalIdPath,
    errors=(400, 404),
)
@requires(Role.VIEWER)
async def get_terminal_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}``: one terminal, or 404."""
    refuse_unknown(request.query, ())
    terminal_id = path_terminal_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_terminal(conn, terminal_id)
    if record is None:
        raise NotFoundError(f"no terminal {terminal_id!r} has reported to this centre")
    return json_model(record)


def add_routes(app: web.Application) -> None:
    """Register the terminal endpoints."""
    app.router.add_get("/api/v1/terminals", list_terminals_endpoint)
    app.router.add_get("/api/v1/terminals/{terminal_id}", get_terminal_endpoint)
