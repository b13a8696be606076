"""``/api/v1/terminals/{id}/commands``: send remote diagnostics, follow their results.

``POST`` records the command and publishes it (201 with its record, ``queued`` or
``sent``); the terminal's answer arrives through the ingest, so a client polls ``GET
.../commands/{command_id}`` until ``state`` is final (``done``, ``failed``,
``rejected``, ``expired``). The terminal page uses the same :func:`issue_for` as this API.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import pydantic
from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import NoQuery, TerminalIdPath
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import COMMANDS_KEY, ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError
from posfleet.dashboard.json_bodies import json_model, json_object_body, validated_body
from posfleet.dashboard.query_params import MAX_ROW_ID, int_param, path_terminal_id, refuse_unknown
from posfleet.diagnostics.errors import CommandRequestError, UnknownTerminalError
from posfleet.diagnostics.remote_commands import (
    MAX_EXPIRY,
    MAX_REASON_CHARS,
    MIN_EXPIRY,
    CommandRecord,
    get_command,
    issue_command,
    list_commands,
)
from posfleet.store.accounts import Role

CommandId = Annotated[str, pydantic.Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
MAX_LIST = 200


class IssueCommandBody(pydantic.BaseModel):
    """What to run on the terminal, and why."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: Annotated[str, pydantic.Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")] = pydantic.Field(
        description="A whitelisted command: print_test, card_reader_test, host_ping, ..."
    )
    args: dict[str, Any] = pydantic.Field(default_factory=dict)
    reason: Annotated[str, pydantic.Field(max_length=MAX_REASON_CHARS)] = pydantic.Field(
        default="", description="Why; required for reboot and restore_config."
    )
    expires_in_s: Annotated[
        int,
        pydantic.Field(
            ge=int(MIN_EXPIRY.total_seconds()),
            le=int(MAX_EXPIRY.total_seconds()),
            description="How long an offline terminal may take to pick it up.",
        ),
    ] = 3600
    case_id: Annotated[int, pydantic.Field(ge=1, le=MAX_ROW_ID)] | None = None


class CommandList(pydantic.BaseModel):
    """A terminal's newest commands, newest first."""

    items: list[CommandRecord]


class CommandListQuery(pydantic.BaseModel):
    """``GET .../commands``: how many."""

    model_config = pydantic.ConfigDict(extra="forbid")

    limit: Annotated[int, pydantic.Field(ge=1, le=MAX_LIST)] = 50


class CommandPath(TerminalIdPath):
    """``{terminal_id}`` and ``{command_id}``."""

    command_id: CommandId


async def issue_for(
    request: web.Request, terminal_id: str, body: IssueCommandBody
) -> CommandRecord:
    """Issue ``body`` to the terminal as the request's user; 400/404 for what cannot go."""
    try:
        return await issue_command(
            request.app[ENGINE_KEY],
            request.app.get(COMMANDS_KEY),
            terminal_id,
            body.name,
            body.args,
            issued_by=principal(request).actor,
            reason=body.reason,
            expires_in=timedelta(seconds=body.expires_in_s),
            case_id=body.case_id,
        )
    except CommandRequestError as exc:
        raise InvalidParameterError(exc.field, exc.message) from None
    except UnknownTerminalError:
        raise NotFoundError(f"no terminal {terminal_id!r} has reported to this centre") from None


def parse_body(raw: dict[str, Any]) -> IssueCommandBody:
    """The body as the model; a 400 naming the first bad field."""
    return validated_body(IssueCommandBody, raw)


@api_operation(
    "Send a command to a terminal",
    tag="commands",
    response=CommandRecord,
    status=201,
    body=IssueCommandBody,
    query=NoQuery,
    path=TerminalIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.SUPPORT)
async def issue_command_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/terminals/{terminal_id}/commands`` ``{name, args, reason, expires_in_s}``."""
    refuse_unknown(request.query, ())
    terminal_id = path_terminal_id(request)
    body = parse_body(await json_object_body(request, max_fields=8))
    record = await issue_for(request, terminal_id, body)
    return json_model(record, status=201)


@api_operation(
    "List a terminal's commands",
    tag="commands",
    response=CommandList,
    query=CommandListQuery,
    path=TerminalIdPath,
)
@requires(Role.VIEWER)
async def list_commands_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}/commands?limit=50``: newest first."""
    refuse_unknown(request.query, ("limit",))
    terminal_id = path_terminal_id(request)
    limit = int_param(request.query, "limit", 50, 1, MAX_LIST)
    async with request.app[ENGINE_KEY].connect() as conn:
        items = await list_commands(conn, terminal_id, limit=limit)
    return json_model(CommandList(items=items))


async def command_of(request: web.Request) -> CommandRecord:
    """The path's command of the path's terminal, or a 404."""
    terminal_id = path_terminal_id(request)
    command_id = request.match_info["command_id"]
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_command(conn, command_id[:64])
    if record is None or record.terminal_id != terminal_id:
        raise NotFoundError(f"terminal {terminal_id!r} has no command {command_id[:64]!r}")
    return record


@api_operation(
    "Show one command and its result",
    tag="commands",
    response=CommandRecord,
    query=NoQuery,
    path=CommandPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def get_command_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}/commands/{command_id}``."""
    refuse_unknown(request.query, ())
    return json_model(await command_of(request))


def add_routes(app: web.Application) -> None:
    """Register the command endpoints."""
    base = "/api/v1/terminals/{terminal_id}/commands"
    app.router.add_post(base, issue_command_endpoint)
    app.router.add_get(base, list_commands_endpoint)
    app.router.add_get(base + "/{command_id}", get_command_endpoint)
