"""Configuration backups on the terminal page, and the restore onto a replacement.

The terminal page's ``backups`` panel lists the terminal's backups (version, time, who),
its replacement links and the restores from or onto it with their live state, and a
"Back up now" form. "Restore onto a replacement" leads to ``/backups/{id}/restore``:
pick the new terminal, read what would change, give a reason and confirm; the page then
returns to the new terminal, whose panel follows the restore live. Thin handlers over
the same functions as :mod:`posfleet.dashboard.backups_api`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.backups_api import (
    backup_id_of,
    backup_now,
    preview_for,
    restore_for,
)
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.fleet_view import terminal_path
from posfleet.dashboard.query_params import checked_terminal_id, path_terminal_id
from posfleet.dashboard.templating import _, render_page
from posfleet.dashboard.terminal_panels import TerminalPanel, add_panel
from posfleet.diagnostics.config_diff import ChangeKind
from posfleet.diagnostics.remote_commands import MAX_REASON_CHARS, get_command
from posfleet.store.accounts import Role
from posfleet.store.config_backups import get_backup, list_backups, list_restores, replacement_links

PANEL_BACKUPS = 10
PANEL_RESTORES = 5
MAX_FIELD = 2000
KIND_LABELS = {
    ChangeKind.CHANGED: _("changed"),
    ChangeKind.SET: _("set"),
    ChangeKind.SAME: _("same"),
    ChangeKind.KEPT: _("kept (not in the backup)"),
    ChangeKind.READ_ONLY: _("kept (the terminal's own)"),
    ChangeKind.WITHHELD: _("secret: by key injection"),
}


def restore_path(backup_id: int) -> str:
    """The restore page of a backup."""
    return f"/backups/{backup_id}/restore"


async def load_panel(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The backups panel's context for ``terminal_id``."""
    restores = []
    for restore in await list_restores(conn, terminal_id, limit=PANEL_RESTORES):
        command = await get_command(conn, restore.command_id)
        restores.append({"restore": restore, "command": command})
    return {
        "links": await replacement_links(conn, terminal_id),
        "backups": await list_backups(conn, terminal_id, limit=PANEL_BACKUPS),
        "restores": restores,
        "can_act": principal(request).role.permits(Role.SUPPORT),
        "backup_action": f"{terminal_path(terminal_id)}/backups",
        "restore_path": restore_path,
        "terminal_path": terminal_path,
    }


def _field(form: MultiMapping[object], name: str) -> str:
    raw = form.get(name, "")
    if not isinstance(raw, str) or len(raw) > MAX_FIELD:
        raise InvalidParameterError(name, _("%s is too long") % name)
    return raw.strip()


@requires(Role.SUPPORT)
async def backup_now_action(request: web.Request) -> web.Response:
    """``POST /terminals/{terminal_id}/backups``: ask for a backup, back to the panel."""
    terminal_id = path_terminal_id(request)
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    await backup_now(request, terminal_id, _field(form, "reason"))
    raise web.HTTPSeeOther(f"{terminal_path(terminal_id)}#panel-backups")


async def _restore_page(
    request: web.Request,
    backup_id: int,
    target: str,
    *,
    reason: str = "",
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[ENGINE_KEY].connect() as conn:
        backup = await get_backup(conn, backup_id)
    if backup is None:
        raise NotFoundError(f"no configuration backup {backup_id}")
    preview = None
    if target and problem is None:
        try:
            preview = await preview_for(request, backup_id, checked_terminal_id(target, "target"))
        except RequestRejectedError as exc:
            problem, status = exc.message, exc.status
    context = {
        "backup": backup,
        "target": target,
        "preview": preview,
        "problem": problem,
        "reason": reason,
        "reason_max": MAX_REASON_CHARS,
        "kind_labels": KIND_LABELS,
        "action": restore_path(backup_id),
        "terminal_path": terminal_path,
    }
    return render_page(request, "backup_restore.html", context, status=status)


@requires(Role.SUPPORT)
async def restore_form(request: web.Request) -> web.Response:
    """``GET /backups/{backup_id}/restore[?target=NEW]``: pick, preview, confirm."""
    unknown = set(request.query) - {"target"}
    if unknown:
        raise InvalidParameterError(sorted(unknown)[0], _("unknown query parameter"))
    target = request.query.get("target", "").strip()[:64]
    return await _restore_page(request, backup_id_of(request), target)


@requires(Role.SUPPORT)
async def restore_action(request: web.Request) -> web.Response:
    """``POST /backups/{backup_id}/restore``: send it, then follow it on the new terminal."""
    backup_id = backup_id_of(request)
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    target, reason = _field(form, "target"), _field(form, "reason")
    if not reason:
        return await _restore_page(
            request, backup_id, target, problem=_("Give a reason for the restore."), status=400
        )
    try:
        await restore_for(request, backup_id, checked_terminal_id(target, "target"), reason)
    except RequestRejectedError as exc:
        return await _restore_page(
            request, backup_id, target, reason=reason, problem=exc.message, status=exc.status
        )
    raise web.HTTPSeeOther(f"{terminal_path(target)}#panel-backups")


def add_routes(app: web.Application) -> None:
    """Register the backups panel, its forms and the restore page."""
    add_panel(app, TerminalPanel("backups", "panel_backups.html", load_panel, order=70))
    app.router.add_post("/terminals/{terminal_id}/backups", backup_now_action)
    app.router.add_get("/backups/{backup_id}/restore", restore_form)
    app.router.add_post("/backups/{backup_id}/restore", restore_action)
