"""The remote diagnostics console on the terminal page: buttons, history, log downloads.

The panel (``panel-commands``) has one button per whitelisted command, a reboot that
asks for a reason and a confirmation, the playbooks, and the terminal's command history
with each result laid out readably; the terminal page's live stream redraws it, so a
result appears without a reload. Every button is a CSRF-protected form POST answered
with a redirect back to the panel (post/redirect/get); the command is recorded and
audited by :func:`~posfleet.diagnostics.remote_commands.issue_command`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import COMMANDS_KEY
from posfleet.dashboard.command_output_view import COMMAND_LABELS, command_view
from posfleet.dashboard.commands_api import (
    IssueCommandBody,
    command_of,
    issue_for,
)
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError, RequestRejectedError
from posfleet.dashboard.fleet_view import TERMINALS_PATH
from posfleet.dashboard.incidents_api import PLAYBOOK_RUNNER_KEY
from posfleet.dashboard.query_params import path_terminal_id
from posfleet.dashboard.templating import _
from posfleet.dashboard.terminal_panels import TerminalPanel, add_panel
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS
from posfleet.diagnostics.remote_commands import list_commands
from posfleet.store.accounts import Role
from posfleet.store.terminal_commands import list_terminal_playbook_runs

log = logging.getLogger(__name__)

PANEL_NAME = "commands"
BUTTONS = (
    "print_test",
    "card_reader_test",
    "host_ping",
    "self_test",
    "sync_clock",
    "read_counters",
    "read_health",
)
"""One-click commands: they take no arguments and change nothing the merchant relies on."""
LOG_RANGES = {"1": timedelta(hours=1), "24": timedelta(hours=24), "168": timedelta(days=7)}
"""``collect_logs`` ranges offered, in hours back from now."""
HISTORY = 15
EXPIRY_CHOICES = {"600": _("10 minutes"), "3600": _("1 hour"), "86400": _("1 day")}

_running: set[asyncio.Task[Any]] = set()
"""Playbook runs started from the page: referenced until they end."""


def commands_path(terminal_id: str) -> str:
    """Where the panel's forms post."""
    return f"{TERMINALS_PATH}/{terminal_id}/commands"


def panel_url(terminal_id: str) -> str:
    """The terminal page, scrolled to the commands panel."""
    return f"{TERMINALS_PATH}/{terminal_id}#panel-{PANEL_NAME}"


async def load_panel(
    conn: AsyncConnection, terminal_id: str, request: web.Request
) -> Mapping[str, Any]:
    """The panel's context: buttons, playbooks, history (two queries)."""
    records = await list_commands(conn, terminal_id, limit=HISTORY)
    runs = await list_terminal_playbook_runs(conn, terminal_id, limit=5)
    has_runner = PLAYBOOK_RUNNER_KEY in request.app
    return {
        "commands": [command_view(record) for record in records],
        "playbook_runs": runs,
        "buttons": [(name, COMMAND_LABELS[name]) for name in BUTTONS],
        "playbooks": [(n, p.title) for n, p in BUILTIN_PLAYBOOKS.items()] if has_runner else [],
        "can_run": principal(request).role.permits(Role.SUPPORT),
        "has_broker": COMMANDS_KEY in request.app,
        "commands_path": commands_path(terminal_id),
        "playbooks_path": f"{TERMINALS_PATH}/{terminal_id}/playbooks",
        "log_ranges": [
            ("1", _("last hour")),
            ("24", _("last 24 hours")),
            ("168", _("last 7 days")),
        ],
        "expiry_choices": list(EXPIRY_CHOICES.items()),
    }


def _field(form: MultiMapping[Any], name: str, limit: int = 2000) -> str:
    value = form.get(name, "")
    if not isinstance(value, str):
        raise InvalidParameterError(name, _("{name} must be text").format(name=name))
    if len(value) > limit:
        raise InvalidParameterError(name, _("{name} is too long").format(name=name))
    return value.strip()


def body_of_form(form: MultiMapping[Any]) -> IssueCommandBody:
    """The command a panel form asks for; a 400 naming what is missing."""
    name = _field(form, "name", 64)
    reason = _field(form, "reason")
    args: dict[str, Any] = {}
    if name == "reboot":
        if _field(form, "confirm", 8) != "yes":
            raise InvalidParameterError(
                "confirm", _("Confirm that the merchant is not in the middle of a sale.")
            )
        if not reason:
            raise InvalidParameterError("reason", _("Say why the terminal is rebooted."))
    elif name == "collect_logs":
        span = LOG_RANGES.get(_field(form, "hours", 4) or "24")
        if span is None:
            raise InvalidParameterError("hours", _("Choose one of the offered ranges."))
        now = utcnow()
        args = {"from": (now - span).isoformat(), "to": (now + timedelta(minutes=5)).isoformat()}
    elif name not in BUTTONS:
        raise InvalidParameterError("name", _("No such button: {name}").format(name=name))
    expiry = _field(form, "expires_in_s", 8) or "3600"
    if expiry not in EXPIRY_CHOICES:
        raise InvalidParameterError("expires_in_s", _("Choose one of the offered expiries."))
    return IssueCommandBody(name=name, args=args, reason=reason, expires_in_s=int(expiry))


@requires(Role.SUPPORT)
async def issue_command_action(request: web.Request) -> web.Response:
    """``POST /terminals/{terminal_id}/commands`` from one of the panel's forms."""
    terminal_id = path_terminal_id(request)
    form = await request.post()
    require_csrf(request, form, session_binding(request))
    await issue_for(request, terminal_id, body_of_form(form))
    raise web.HTTPSeeOther(panel_url(terminal_id))


@requires(Role.SUPPORT)
async def run_playbook_action(request: web.Request) -> web.Response:
    """``POST /terminals/{terminal_id}/playbooks``: start one; its run shows in the panel."""
    terminal_id = path_terminal_id(request)
    form = await request.post()
    require_csrf(request, form, session_binding(request))
    runner = request.app.get(PLAYBOOK_RUNNER_KEY)
    if runner is None:
        raise RequestRejectedError(_("playbooks need the broker, and this dashboard has none"))
    name = _field(form, "playbook", 64)
    if name not in BUILTIN_PLAYBOOKS:
        raise InvalidParameterError("playbook", _("No playbook {name!r}").format(name=name))
    # The run has a server-side deadline and records its own progress; the page does
    # not wait for it (a run takes up to two minutes).
    task = asyncio.create_task(
        runner.run(name, terminal_id, started_by=principal(request).actor),
        name=f"playbook-{name}-{terminal_id}",
    )
    _running.add(task)
    task.add_done_callback(_finished)
    raise web.HTTPSeeOther(panel_url(terminal_id))


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("playbook run %s failed", task.get_name(), exc_info=task.exception())


@requires(Role.VIEWER)
async def download_logs(request: web.Request) -> web.Response:
    """``GET /terminals/{terminal_id}/commands/{command_id}/logs``: the collected text."""
    record = await command_of(request)
    text = (record.output or {}).get("text")
    if record.name != "collect_logs" or not isinstance(text, str):
        raise InvalidParameterError("command_id", _("This command collected no logs."))
    filename = f"{record.terminal_id}-{record.issued_at:%Y%m%dT%H%M}Z-logs.txt"
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )


def add_routes(app: web.Application) -> None:
    """Register the panel and its forms."""
    add_panel(app, TerminalPanel(PANEL_NAME, "panel_commands.html", load_panel, order=60))
    base = f"{TERMINALS_PATH}/{{terminal_id}}"
    app.router.add_post(f"{base}/commands", issue_command_action)
    app.router.add_post(f"{base}/playbooks", run_playbook_action)
    app.router.add_get(f"{base}/commands/{{command_id}}/logs", download_logs)
