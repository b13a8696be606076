"""``/api/v1/.../backups``: configuration backups and restoring one onto a replacement.

``POST /api/v1/terminals/{id}/backups`` asks the terminal for a backup now (202 with the
``backup_config`` command; the backup is listed once the terminal answers).
``GET /api/v1/backups/{id}/preview?target_terminal_id=NEW`` shows what a restore would
change, and ``POST /api/v1/backups/{id}/restore`` ``{target_terminal_id, reason}`` sends
it (201 with the restore and its ``restore_config`` command); once the new terminal
applied it, the registry links the two (``replaces`` / ``replaced_by``). The pages call
the same functions as these handlers.
"""

from __future__ import annotations

from typing import Annotated

import pydantic
from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import NoQuery, TerminalIdPath
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import COMMANDS_KEY, ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.json_bodies import json_model, json_object_body, validated_body
from posfleet.dashboard.query_params import MAX_ROW_ID, path_terminal_id, refuse_unknown
from posfleet.diagnostics.config_backups import (
    RestorePreview,
    preview_restore,
    restore_backup,
    take_backup,
)
from posfleet.diagnostics.config_diff import ConfigDiff
from posfleet.diagnostics.errors import (
    BackupNotFoundError,
    CommandRequestError,
    RestoreRefusedError,
    UnknownTerminalError,
)
from posfleet.diagnostics.remote_commands import MAX_REASON_CHARS, CommandRecord
from posfleet.store.accounts import Role
from posfleet.store.config_backups import (
    BackupRecord,
    ReplacementLinks,
    RestoreRecord,
    get_backup,
    list_backups,
    list_restores,
    replacement_links,
)

BACKUPS_SHOWN = 50
TerminalId = Annotated[str, pydantic.Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
Reason = Annotated[str, pydantic.Field(max_length=MAX_REASON_CHARS)]


class RestoreConflictError(RequestRejectedError):
    """The registry forbids this restore now (the old terminal has another replacement)."""

    status = 409
    code = "conflict"


class BackupIdPath(pydantic.BaseModel):
    """``{backup_id}``."""

    backup_id: Annotated[int, pydantic.Field(ge=1, le=MAX_ROW_ID)]


class TerminalBackups(pydantic.BaseModel):
    """A terminal's backups, newest first, its restores and its replacement links."""

    links: ReplacementLinks
    items: list[BackupRecord]
    restores: list[RestoreRecord]


class BackupNowBody(pydantic.BaseModel):
    """Why a backup is taken now (optional)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    reason: Reason = ""


class RestoreBody(pydantic.BaseModel):
    """The replacement terminal, and why."""

    model_config = pydantic.ConfigDict(extra="forbid")

    target_terminal_id: TerminalId
    reason: Reason = pydantic.Field(min_length=1)


class PreviewQuery(pydantic.BaseModel):
    """``?target_terminal_id=``: the terminal the backup would go onto."""

    model_config = pydantic.ConfigDict(extra="forbid")

    target_terminal_id: TerminalId


class RestorePreviewShown(pydantic.BaseModel):
    """What a restore would change: the backup, the target's newest backup, the lines."""

    backup: BackupRecord
    target_terminal_id: str
    target_backup_id: int | None
    diff: ConfigDiff


class RestoreStarted(pydantic.BaseModel):
    """A restore that was sent: follow ``command`` until it is final."""

    restore: RestoreRecord
    command: CommandRecord


def backup_id_of(request: web.Request) -> int:
    """The path's ``{backup_id}``; 400 unless a plain number."""
    raw = request.match_info["backup_id"]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ROW_ID:
        raise InvalidParameterError("backup_id", f"backup id {raw[:40]!r} must be a number")
    return int(raw)


def refused(exc: Exception) -> RequestRejectedError:
    """The API's (and pages') answer to a backup or restore the domain refused."""
    if isinstance(exc, BackupNotFoundError):
        return NotFoundError(str(exc))
    if isinstance(exc, UnknownTerminalError):
        return NotFoundError(f"no terminal {exc.terminal_id!r} has reported to this centre")
    if isinstance(exc, RestoreRefusedError):
        if exc.conflict:
            return RestoreConflictError(exc.message)
        return InvalidParameterError(exc.field, exc.message)
    if isinstance(exc, CommandRequestError):
        return InvalidParameterError(exc.field, exc.message)
    raise exc


async def terminal_backups(request: web.Request, terminal_id: str) -> TerminalBackups:
    """The terminal's backups and links; 404 for a terminal the registry does not know."""
    async with request.app[ENGINE_KEY].connect() as conn:
        links = await replacement_links(conn, terminal_id)
        if links is None:
            raise NotFoundError(f"no terminal {terminal_id!r} has reported to this centre")
        items = await list_backups(conn, terminal_id, limit=BACKUPS_SHOWN)
        restores = await list_restores(conn, terminal_id)
    return TerminalBackups(links=links, items=items, restores=restores)


async def backup_now(request: web.Request, terminal_id: str, reason: str) -> CommandRecord:
    """Ask the terminal for a backup as the request's user."""
    try:
        return await take_backup(
            request.app[ENGINE_KEY],
            request.app.get(COMMANDS_KEY),
            terminal_id,
            issued_by=principal(request).actor,
            reason=reason,
        )
    except (UnknownTerminalError, CommandRequestError) as exc:
        raise refused(exc) from None


async def preview_for(request: web.Request, backup_id: int, target: str) -> RestorePreview:
    """The restore preview, or the refusal as a 4xx."""
    async with request.app[ENGINE_KEY].connect() as conn:
        try:
            return await preview_restore(conn, backup_id, target)
        except (BackupNotFoundError, UnknownTerminalError, RestoreRefusedError) as exc:
            raise refused(exc) from None


async def restore_for(
    request: web.Request, backup_id: int, target: str, reason: str
) -> RestoreStarted:
    """Send the restore as the request's user, or the refusal as a 4xx."""
    try:
        restore, command = await restore_backup(
            request.app[ENGINE_KEY],
            request.app.get(COMMANDS_KEY),
            backup_id,
            target,
            requested_by=principal(request).actor,
            reason=reason,
        )
    except (
        BackupNotFoundError,
        UnknownTerminalError,
        RestoreRefusedError,
        CommandRequestError,
    ) as exc:
        raise refused(exc) from None
    return RestoreStarted(restore=restore, command=command)


@api_operation(
    "List a terminal's configuration backups",
    tag="backups",
    response=TerminalBackups,
    query=NoQuery,
    path=TerminalIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def list_backups_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/terminals/{terminal_id}/backups``: newest first, with the links."""
    refuse_unknown(request.query, ())
    terminal_id = path_terminal_id(request)
    return json_model(await terminal_backups(request, terminal_id))


@api_operation(
    "Back a terminal's configuration up now",
    tag="backups",
    response=CommandRecord,
    status=202,
    body=BackupNowBody,
    query=NoQuery,
    path=TerminalIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.SUPPORT)
async def backup_now_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/terminals/{terminal_id}/backups`` ``{reason}``: the backup command."""
    refuse_unknown(request.query, ())
    terminal_id = path_terminal_id(request)
    body: BackupNowBody = validated_body(
        BackupNowBody, await json_object_body(request, max_fields=2)
    )
    return json_model(await backup_now(request, terminal_id, body.reason), status=202)


async def _backup(request: web.Request) -> BackupRecord:
    backup_id = backup_id_of(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        backup = await get_backup(conn, backup_id)
    if backup is None:
        raise NotFoundError(f"no configuration backup {backup_id}")
    return backup


@api_operation(
    "Show one configuration backup",
    tag="backups",
    response=BackupRecord,
    query=NoQuery,
    path=BackupIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.VIEWER)
async def get_backup_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/backups/{backup_id}``: its parameters (secret ones only named)."""
    refuse_unknown(request.query, ())
    return json_model(await _backup(request))


@api_operation(
    "Preview a restore onto a replacement terminal",
    tag="backups",
    response=RestorePreviewShown,
    query=PreviewQuery,
    path=BackupIdPath,
    errors=(400, 401, 403, 404, 409),
)
@requires(Role.VIEWER)
async def preview_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/backups/{backup_id}/preview?target_terminal_id=``: changes nothing."""
    refuse_unknown(request.query, ("target_terminal_id",))
    query: PreviewQuery = validated_body(PreviewQuery, dict(request.query))
    preview = await preview_for(request, backup_id_of(request), query.target_terminal_id)
    return json_model(
        RestorePreviewShown(
            backup=preview.backup,
            target_terminal_id=preview.target_terminal_id,
            target_backup_id=preview.target_backup.id if preview.target_backup else None,
            diff=preview.diff,
        )
    )


@api_operation(
    "Restore a backup onto a replacement terminal",
    tag="backups",
    response=RestoreStarted,
    status=201,
    body=RestoreBody,
    query=NoQuery,
    path=BackupIdPath,
    errors=(400, 401, 403, 404, 409),
)
@requires(Role.SUPPORT)
async def restore_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/backups/{backup_id}/restore`` ``{target_terminal_id, reason}``."""
    refuse_unknown(request.query, ())
    body: RestoreBody = validated_body(RestoreBody, await json_object_body(request, max_fields=2))
    started = await restore_for(
        request, backup_id_of(request), body.target_terminal_id, body.reason
    )
    return json_model(started, status=201)


def add_routes(app: web.Application) -> None:
    """Register the backup API."""
    app.router.add_get("/api/v1/terminals/{terminal_id}/backups", list_backups_endpoint)
    app.router.add_post("/api/v1/terminals/{terminal_id}/backups", backup_now_endpoint)
    app.router.add_get("/api/v1/backups/{backup_id}", get_backup_endpoint)
    app.router.add_get("/api/v1/backups/{backup_id}/preview", preview_endpoint)
    app.router.add_post("/api/v1/backups/{backup_id}/restore", restore_endpoint)
