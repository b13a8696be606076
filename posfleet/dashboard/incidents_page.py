"""``/incidents``: the incident list and detail pages, and the staff actions as forms.

Thin handlers: parse, call one domain function, render. Reading needs the viewer role;
acting needs support. Every action is a CSRF-protected POST answered with a redirect
back to the incident (post/redirect/get), so a reload never repeats it.
"""

from __future__ import annotations

from collections.abc import Awaitable

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.csrf import csrf_token, require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.incident_reading import (
    fetch_incident_detail,
    fetch_incident_page,
    parse_incident_id,
    parse_incident_query,
)
from posfleet.dashboard.incident_view import (
    INCIDENTS_PATH,
    ActionOptions,
    incident_detail_body,
    incident_list_section,
    incident_path,
)
from posfleet.dashboard.incidents_api import INCIDENT_ACTIONS_KEY, PLAYBOOK_RUNNER_KEY
from posfleet.dashboard.markup import Markup
from posfleet.dashboard.page_layout import live_page, page
from posfleet.diagnostics.errors import (
    DiagnosticsError,
    IncidentNotFoundError,
    IncidentTransitionError,
    PlaybookError,
)
from posfleet.diagnostics.incident_actions import IncidentActions
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS
from posfleet.store.accounts import Role
from posfleet.store.incidents import get_incident

INCIDENTS_FRAGMENT_PATH = f"{FRAGMENT_PREFIX}incidents"
MAX_TEXT = 4000


def _html(document: Markup, status: int = 200) -> web.Response:
    return web.Response(status=status, text=document, content_type="text/html")


async def _list_section(request: web.Request) -> Markup:
    query = parse_incident_query(request.query)
    async with request.app[ENGINE_KEY].connect() as conn:
        found = await fetch_incident_page(conn, query)
    return incident_list_section(found, query, utcnow())


@requires(Role.VIEWER)
async def incident_list(request: web.Request) -> web.Response:
    """``GET /incidents``: unresolved incidents (or one state), newest first, kept current."""
    document = live_page(
        "Incidents",
        await _list_section(request),
        refresh_url=INCIDENTS_FRAGMENT_PATH,
        user=principal(request),
        csrf_token=csrf_token(request, session_binding(request)),
    )
    return _html(document)


@requires(Role.VIEWER)
async def incident_list_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/incidents``: the list alone, for the refresh script."""
    return _html(await _list_section(request))


@requires(Role.VIEWER)
async def incident_detail(request: web.Request) -> web.Response:
    """``GET /incidents/{id}``: cause, remedy, escalation, the terminal, actions, timeline."""
    incident_id = parse_incident_id(request.match_info["incident_id"])
    async with request.app[ENGINE_KEY].connect() as conn:
        detail = await fetch_incident_detail(conn, incident_id)
    if detail is None:
        raise NotFoundError(f"there is no incident #{incident_id}")
    user = principal(request)
    token = csrf_token(request, session_binding(request))
    runnable = (
        [(name, playbook.title) for name, playbook in BUILTIN_PLAYBOOKS.items()]
        if PLAYBOOK_RUNNER_KEY in request.app
        else []
    )
    options = ActionOptions(token, user.role.permits(Role.SUPPORT), runnable)
    body = incident_detail_body(detail, options, utcnow())
    title = f"Incident #{incident_id}"
    return _html(page(title, body, user=user, csrf_token=token))


# -- actions ------------------------------------------------------------------------------


async def _checked_form(request: web.Request) -> MultiMapping[object]:
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    return form


def _text(form: MultiMapping[object], name: str, *, required: bool = False) -> str:
    value = form.get(name, "")
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidParameterError(name, f"{name} must be a text of at most {MAX_TEXT} characters")
    if required and not value.strip():
        raise InvalidParameterError(name, f"{name} must not be empty")
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


async def _incident_terminal(request: web.Request, incident_id: int) -> str:
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_incident(conn, incident_id)
    if record is None or record.terminal_id is None:
        raise NotFoundError(f"there is no terminal incident #{incident_id}")
    return record.terminal_id


@requires(Role.SUPPORT)
async def run_playbook_action(request: web.Request) -> web.Response:
    """``POST /incidents/{id}/playbooks`` with ``playbook``: run it and show the outcome.

    Answers when the run has ended (every run has a server-side deadline); the outcome
    is on the incident's timeline.
    """
    incident_id = parse_incident_id(request.match_info["incident_id"])
    form = await _checked_form(request)
    runner = request.app.get(PLAYBOOK_RUNNER_KEY)
    if runner is None:
        raise RequestRejectedError("playbooks need the broker, and this dashboard has none")
    terminal_id = await _incident_terminal(request, incident_id)
    name = _text(form, "playbook", required=True)
    try:
        await runner.run(
            name, terminal_id, started_by=principal(request).actor, incident_id=incident_id
        )
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
    app.router.add_post(f"{INCIDENTS_PATH}/{{incident_id}}/playbooks", run_playbook_action)
