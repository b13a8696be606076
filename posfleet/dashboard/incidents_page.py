"""``/incidents``: the incident list and detail pages, and the staff actions as forms.

Thin handlers: parse, call one domain function, render. Reading needs the viewer role;
acting needs support. Every action is a CSRF-protected POST answered with a redirect
back to the incident (post/redirect/get), so a reload never repeats it.
"""

from __future__ import annotations

from collections.abc import Awaitable
from functools import cache
from typing import Any, Protocol

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.fleet_view import terminal_rows
from posfleet.dashboard.incident_forms import MAX_TEXT, ActionOptions, action_forms
from posfleet.dashboard.incident_reading import (
    fetch_incident_detail,
    fetch_incident_page,
    fetch_staff,
    parse_incident_id,
    parse_incident_query,
)
from posfleet.dashboard.incident_runs_view import EXPANDED_RUNS
from posfleet.dashboard.incident_view import (
    INCIDENTS_PATH,
    detail_context,
    incident_path,
    list_context,
)
from posfleet.dashboard.incidents_api import INCIDENT_ACTIONS_KEY, PLAYBOOK_RUNNER_KEY
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.templating import _, render_fragment, render_page
from posfleet.diagnostics.errors import (
    DiagnosticsError,
    IncidentNotFoundError,
    IncidentTransitionError,
    PlaybookError,
    PlaybookTargetError,
)
from posfleet.diagnostics.incident_actions import IncidentActions
from posfleet.diagnostics.incident_guidance import guidance_for
from posfleet.diagnostics.playbook_targets import fleet_playbook_terminals
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.rule_model import Escalation, Rule
from posfleet.store.accounts import Role

INCIDENTS_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}incidents"


class RulesInForce(Protocol):
    """What holds the running rules (the diagnostics service)."""

    @property
    def rules(self) -> list[Rule]:
        """The rules in force."""
        ...


RULES_IN_FORCE_KEY = web.AppKey("rules_in_force", RulesInForce)
"""Optional: the running diagnostics, whose rules say each incident's playbook and who
fixes it; without it, the built-in rule pack is read."""


@cache
def _builtin_rules() -> dict[str, Rule]:
    return {rule.id: rule for rule in load_builtin_rules()}


def _rule(request: web.Request, rule_id: str) -> Rule | None:
    running = request.app.get(RULES_IN_FORCE_KEY)
    if running is None:
        return _builtin_rules().get(rule_id)
    return next((rule for rule in running.rules if rule.id == rule_id), None)


async def _list_context(request: web.Request) -> dict[str, Any]:
    signer = cursors(request.app)
    query = parse_incident_query(request.query, signer)
    async with request.app[ENGINE_KEY].connect() as conn:
        found = await fetch_incident_page(conn, query, signer)
    return list_context(found, query)


@requires(Role.VIEWER)
async def incident_list(request: web.Request) -> web.Response:
    """``GET /incidents``: unresolved incidents (or one state), newest first, kept current."""
    context = {**await _list_context(request), "refresh_url": INCIDENTS_FRAGMENT_PATH}
    return render_page(request, "incidents.html", context, scripts=["live-section.js"])


@requires(Role.VIEWER)
async def incident_list_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/incidents``: the list alone, for the refresh script."""
    return render_fragment(request, "incident_list.html", await _list_context(request))


@requires(Role.VIEWER)
async def incident_detail(request: web.Request) -> web.Response:
    """``GET /incidents/{id}``: cause, remedy, who fixes it, actions, results, timeline."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    async with request.app[ENGINE_KEY].connect() as conn:
        detail = await fetch_incident_detail(conn, incident_id)
        staff = await fetch_staff(conn)
    if detail is None:
        raise NotFoundError(_("there is no incident #%(id)s") % {"id": incident_id})
    runnable = (
        [(name, playbook.title) for name, playbook in BUILTIN_PLAYBOOKS.items()]
        if PLAYBOOK_RUNNER_KEY in request.app
        else []
    )
    record = detail.incident
    guidance = guidance_for(record, _rule(request, record.rule_id))
    options = ActionOptions(
        principal(request).role.permits(Role.SUPPORT),
        runnable,
        default_playbook=guidance.playbook,
        staff=staff,
        targets=fleet_playbook_terminals(detail.children),
    )
    context = {
        **detail_context(detail, guidance),
        "forms": action_forms(record, incident_path(record.id), options),
        "expanded_runs": EXPANDED_RUNS,
        "terminal_rows": terminal_rows([detail.terminal], utcnow()) if detail.terminal else [],
    }
    return render_page(request, "incident.html", context)


# -- actions ------------------------------------------------------------------------------


async def _checked_form(request: web.Request) -> MultiMapping[object]:
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    return form


def _text(form: MultiMapping[object], name: str, *, required: bool = False) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        message = _("%(name)s must be a text of at most %(limit)s characters")
        raise InvalidParameterError(name, message % {"name": name, "limit": MAX_TEXT})
    if required and not value.strip():
        raise InvalidParameterError(name, _("%(name)s must not be empty") % {"name": name})
    return value


def _domain_actions(request: web.Request) -> IncidentActions:
    found = request.app.get(INCIDENT_ACTIONS_KEY)
    return found if found is not None else IncidentActions(request.app[ENGINE_KEY])


async def _done(incident_id: int, action: Awaitable[object]) -> web.Response:
    """Await the domain action and send the browser back to the incident."""
    try:
        await action
    except IncidentNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except IncidentTransitionError as exc:
        raise RequestRejectedError(str(exc)) from None
    raise web.HTTPSeeOther(incident_path(incident_id))


@requires(Role.SUPPORT)
async def acknowledge_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/ack``: take the incident."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    await _checked_form(request)
    actor = principal(request).actor
    return await _done(incident_id, _domain_actions(request).acknowledge(incident_id, actor=actor))


@requires(Role.SUPPORT)
async def resolve_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/resolve`` with ``resolution``: close it, saying how."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    actor = principal(request).actor
    resolution = _text(form, "resolution").strip()
    action = _domain_actions(request).resolve(incident_id, actor=actor, resolution=resolution)
    return await _done(incident_id, action)


@requires(Role.SUPPORT)
async def note_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/notes`` with ``text``: add to the timeline."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    actor = principal(request).actor
    text = _text(form, "text", required=True)
    return await _done(incident_id, _domain_actions(request).note(incident_id, text, actor=actor))


@requires(Role.SUPPORT)
async def assign_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/assign`` with ``assignee`` (empty: nobody): give it to someone."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    name = _text(form, "assignee").strip()
    if name:
        async with request.app[ENGINE_KEY].connect() as conn:
            staff = await fetch_staff(conn)
        if name not in staff:
            message = _("there is no staff member %(name)r; pick one from the list")
            raise InvalidParameterError("assignee", message % {"name": name})
    actor = principal(request).actor
    action = _domain_actions(request).assign(incident_id, name or None, actor=actor)
    return await _done(incident_id, action)


@requires(Role.SUPPORT)
async def escalate_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/escalate`` with ``to`` and ``reason``: send the problem on."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    try:
        to = Escalation(_text(form, "to", required=True).strip())
    except ValueError:
        raise InvalidParameterError("to", _("to is on_site, swap or remote_fix")) from None
    reason = _text(form, "reason").strip()
    actor = principal(request).actor
    action = _domain_actions(request).escalate(incident_id, to, actor=actor, reason=reason)
    return await _done(incident_id, action)


@requires(Role.SUPPORT)
async def run_playbook_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/playbooks`` with ``playbook`` (and, on a fleet incident,
    ``terminal``: one of its terminals or ``*`` for all): run it and show the outcome.

    Answers when the runs have ended (every run has a server-side deadline); each run's
    verdict is on the page, and on the terminal's own incident.
    """
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    runner = request.app.get(PLAYBOOK_RUNNER_KEY)
    if runner is None:
        raise RequestRejectedError(_("playbooks need the broker, and this dashboard has none"))
    name = _text(form, "playbook", required=True)
    terminal = _text(form, "terminal").strip()
    try:
        await runner.run_for_incident(
            name, incident_id, terminal=terminal, started_by=principal(request).actor
        )
    except IncidentNotFoundError:
        raise NotFoundError(_("there is no incident #%(id)s") % {"id": incident_id}) from None
    except PlaybookTargetError as exc:
        raise InvalidParameterError("terminal", str(exc)) from None
    except PlaybookError as exc:
        raise InvalidParameterError("playbook", str(exc)) from None
    except DiagnosticsError as exc:
        raise RequestRejectedError(str(exc)) from None
    raise web.HTTPSeeOther(incident_path(incident_id))


def add_routes(app: web.Application) -> None:
    """Register the incident pages, their fragment and the action forms."""
    app.router.add_get(INCIDENTS_PATH, incident_list)
    app.router.add_get(INCIDENTS_FRAGMENT_PATH, incident_list_fragment)
    app.router.add_get(f"{INCIDENTS_PATH}/{{incident_id}}", incident_detail)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/ack", acknowledge_action)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/resolve", resolve_action)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/notes", note_action)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/assign", assign_action)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/escalate", escalate_action)
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/playbooks", run_playbook_action)
