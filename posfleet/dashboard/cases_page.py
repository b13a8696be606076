"""``/cases``: the case list with its reminders, the new-case form, one case's page, and
the forms that note, link, follow up, assign and change a case's state.

Thin handlers over :class:`posfleet.helpdesk.CaseDesk`, as the API: parse the form,
call one action, redirect (post/redirect/get). Reading needs the viewer role, every
form support. A refusal is the error page with the helpdesk's reason.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import utcnow
from posfleet.dashboard.access import FRAGMENT_PREFIX, principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.case_api_models import CaseListQuery
from posfleet.dashboard.case_panel import add_cases_panel
from posfleet.dashboard.case_views import (
    CASES_PATH,
    NEW_CASE_PATH,
    case_path,
    labels,
)
from posfleet.dashboard.cases_api import (
    CASES_SCOPE,
    case_filter,
    case_id_of,
    desk,
    desk_errors,
    load_detail,
    parsed,
)
from posfleet.dashboard.csrf import require_csrf, session_binding
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.templating import _, duration, render_fragment, render_page
from posfleet.helpdesk import NEXT_STATES, follow_up_status, helpdesk_day
from posfleet.store.accounts import Role
from posfleet.store.cases import (
    CaseCategory,
    CaseChannel,
    CaseDraft,
    CaseLinkKind,
    CasePriority,
    CaseRecord,
    CaseState,
    count_follow_ups_due,
    follow_ups_due,
    list_cases,
)
from posfleet.store.incidents import IncidentState, list_incidents
from posfleet.store.merchants import get_merchant
from posfleet.store.terminal_commands import list_commands
from posfleet.store.terminals import get_terminal

FRAGMENT_CASES = f"{FRAGMENT_PREFIX}cases"
LIST_FIELDS = ("state", "assignee", "merchant_id", "terminal_id", "follow_up", "before")
MAX_FIELD = 4000
SUGGESTED_COMMANDS = 5
SUBJECT_FROM_COMPLAINT = 80


def _rows(cases: list[CaseRecord], today: date) -> list[dict[str, Any]]:
    return [{"case": c, "follow_up": follow_up_status(c, today)} for c in cases]


@requires(Role.VIEWER)
async def cases_list(request: web.Request) -> web.Response:
    """``GET /cases``: the follow-ups due today or overdue, then the filtered cases."""
    given = {k: v for k, v in request.query.items() if v != ""}
    unknown = sorted(set(given) - set(LIST_FIELDS))
    if unknown:
        raise InvalidParameterError(unknown[0], _("unknown filter %s") % unknown[0])
    query = parsed(CaseListQuery, given)
    signer = cursors(request.app)
    today = helpdesk_day(utcnow())
    async with request.app[ENGINE_KEY].connect() as conn:
        reminders = await follow_ups_due(conn, today)
        due_today, overdue = await count_follow_ups_due(conn, today)
        rows = await list_cases(
            conn,
            case_filter(query),
            limit=query.limit + 1,
            before_id=signer.row_id(CASES_SCOPE, query.before, "before"),
        )
    cases = rows[: query.limit]
    next_path = None
    if len(rows) > query.limit:
        following = signer.id_cursor(CASES_SCOPE, cases[-1].id)
        next_path = f"{CASES_PATH}?" + urlencode({**given, "before": following})
    context = {
        **labels(),
        "reminders": _rows(reminders, today),
        "due_today": due_today,
        "overdue": overdue,
        "rows": _rows(cases, today),
        "filters": query,
        "next_path": next_path,
    }
    return render_page(request, "cases.html", context)


def _field(form: MultiMapping[object], name: str) -> str:
    raw = form.get(name, "")
    if not isinstance(raw, str) or len(raw) > MAX_FIELD:
        raise InvalidParameterError(name, _("%s must be a text of at most 4000 characters") % name)
    return raw.strip()


@requires(Role.SUPPORT)
async def new_case_form(request: web.Request) -> web.Response:
    """``GET /cases/new[?terminal=ID]``: the form; the terminal's merchant filled in."""
    values = {
        "merchant_id": "", "terminal_ids": "", "caller_name": "", "caller_phone": "",
        "channel": CaseChannel.PHONE.value, "complaint": "", "subject": "",
        "category": CaseCategory.OTHER.value, "priority": CasePriority.NORMAL.value,
        "follow_up_on": "",
    }  # fmt: skip
    terminal_id = request.query.get("terminal", "")
    if terminal_id and len(terminal_id) <= 64:
        async with request.app[ENGINE_KEY].connect() as conn:
            terminal = await get_terminal(conn, terminal_id)
            if terminal is not None:
                values["terminal_ids"] = terminal.terminal_id
                values["merchant_id"] = terminal.merchant_id or ""
                merchant = (
                    await get_merchant(conn, terminal.merchant_id) if terminal.merchant_id else None
                )
                if merchant is not None:
                    values["caller_name"] = merchant.contact_name
                    values["caller_phone"] = merchant.contact_phone
    return render_page(request, "case_new.html", {**labels(), "values": values})


def _choice(form: MultiMapping[object], name: str, kind: type[Any]) -> Any:
    raw = _field(form, name)
    try:
        return kind(raw)
    except ValueError:
        raise InvalidParameterError(name, _("%s is not one of the choices") % name) from None


def _day(raw: str, name: str) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidParameterError(
            name, _("%s must be a date such as 2026-03-02") % name
        ) from None


async def _form(request: web.Request) -> MultiMapping[object]:
    form: MultiMapping[object] = await request.post()
    require_csrf(request, form, session_binding(request))
    return form


@requires(Role.SUPPORT)
async def create_case(request: web.Request) -> web.Response:
    """``POST /cases``: open the case and show it."""
    form = await _form(request)
    complaint = _field(form, "complaint")
    subject = _field(form, "subject") or complaint[:SUBJECT_FROM_COMPLAINT]
    draft = CaseDraft(
        merchant_id=_field(form, "merchant_id"),
        subject=subject,
        complaint=complaint,
        channel=_choice(form, "channel", CaseChannel),
        category=_choice(form, "category", CaseCategory),
        priority=_choice(form, "priority", CasePriority),
        terminal_ids=[t.strip() for t in _field(form, "terminal_ids").split(",") if t.strip()],
        caller_name=_field(form, "caller_name"),
        caller_phone=_field(form, "caller_phone"),
        follow_up_on=_day(_field(form, "follow_up_on"), "follow_up_on"),
    )
    with desk_errors():
        case = await desk(request).open(draft, actor=principal(request).actor)
    raise web.HTTPSeeOther(case_path(case.id))


async def _suggestions(request: web.Request, case: CaseRecord) -> dict[str, Any]:
    """The case's terminals' open incidents and recent commands not linked yet."""
    async with request.app[ENGINE_KEY].connect() as conn:
        incidents = []
        commands = []
        for terminal_id in case.terminal_ids:
            incidents += await list_incidents(
                conn,
                terminal_id=terminal_id,
                states=[IncidentState.OPEN, IncidentState.ACKNOWLEDGED],
                limit=20,
            )
            commands += await list_commands(conn, terminal_id, limit=SUGGESTED_COMMANDS)
    return {"link_incidents": incidents, "link_commands": commands}


@requires(Role.VIEWER)
async def case_page(request: web.Request) -> web.Response:
    """``GET /cases/{case_id}``: the case, its links (live), notes and forms."""
    detail = await load_detail(request, case_id_of(request))
    case = detail.case
    linked = {(item.link.kind, item.link.ref) for item in detail.links}
    suggested = await _suggestions(request, case)
    suggested["link_incidents"] = [
        i for i in suggested["link_incidents"] if (CaseLinkKind.INCIDENT, str(i.id)) not in linked
    ]
    suggested["link_commands"] = [
        c for c in suggested["link_commands"] if (CaseLinkKind.COMMAND, c.id) not in linked
    ]
    first, resolution = detail.first_response_s, detail.resolution_s
    context = {
        **labels(),
        **suggested,
        "detail": detail,
        "case_path": case_path(case.id),
        "refresh_url": f"{FRAGMENT_CASES}/{case.id}/links",
        "can_act": principal(request).role.permits(Role.SUPPORT),
        "next_states": sorted(
            (s for s in NEXT_STATES[case.state] if s is not CaseState.CLOSED),
            key=list(CaseState).index,
        ),
        "first_response": _("not yet") if first is None else duration(timedelta(seconds=first)),
        "resolution": (
            _("not yet") if resolution is None else duration(timedelta(seconds=resolution))
        ),
    }
    return render_page(request, "case.html", context, scripts=["live-section.js"])


@requires(Role.VIEWER)
async def case_links_fragment(request: web.Request) -> web.Response:
    """``GET /fragments/cases/{case_id}/links``: the linked objects' states, for the refresh."""
    detail = await load_detail(request, case_id_of(request))
    return render_fragment(request, "case_links.html", {**labels(), "detail": detail})


def _back(form: MultiMapping[object], case_id: int) -> str:
    """Where a form returns: the case, or the terminal page the panel's form came from."""
    raw = form.get("next", "")
    if (
        isinstance(raw, str)
        and raw.startswith("/terminals/")
        and "//" not in raw
        and len(raw) < 200
    ):
        return raw
    return case_path(case_id)


@requires(Role.SUPPORT)
async def add_note_action(request: web.Request) -> web.Response:
    """``POST /cases/{case_id}/notes`` with ``text``."""
    case_id = case_id_of(request)
    form = await _form(request)
    with desk_errors():
        await desk(request).add_note(case_id, _field(form, "text"), actor=principal(request).actor)
    raise web.HTTPSeeOther(case_path(case_id))


@requires(Role.SUPPORT)
async def add_link_action(request: web.Request) -> web.Response:
    """``POST /cases/{case_id}/links`` with ``kind`` and ``ref`` (and ``next``)."""
    case_id = case_id_of(request)
    form = await _form(request)
    kind = _choice(form, "kind", CaseLinkKind)
    with desk_errors():
        await desk(request).link(case_id, kind, _field(form, "ref"), actor=principal(request).actor)
    raise web.HTTPSeeOther(_back(form, case_id))


@requires(Role.SUPPORT)
async def follow_up_action(request: web.Request) -> web.Response:
    """``POST /cases/{case_id}/follow-up`` with ``follow_up_on`` (empty: clear) and a note."""
    case_id = case_id_of(request)
    form = await _form(request)
    on = _day(_field(form, "follow_up_on"), "follow_up_on")
    with desk_errors():
        await desk(request).set_follow_up(
            case_id, on, actor=principal(request).actor, note=_field(form, "follow_up_note")
        )
    raise web.HTTPSeeOther(case_path(case_id))


@requires(Role.SUPPORT)
async def assign_action(request: web.Request) -> web.Response:
    """``POST /cases/{case_id}/assign`` with ``assignee`` (empty: nobody)."""
    case_id = case_id_of(request)
    form = await _form(request)
    with desk_errors():
        await desk(request).assign(
            case_id, _field(form, "assignee") or None, actor=principal(request).actor
        )
    raise web.HTTPSeeOther(case_path(case_id))


@requires(Role.SUPPORT)
async def state_action(request: web.Request) -> web.Response:
    """``POST /cases/{case_id}/state`` with ``state``, ``reason`` or ``confirmation``."""
    case_id = case_id_of(request)
    form = await _form(request)
    target = _choice(form, "state", CaseState)
    with desk_errors():
        await desk(request).change_state(
            case_id,
            target,
            actor=principal(request).actor,
            reason=_field(form, "reason"),
            confirmation=_field(form, "confirmation"),
        )
    raise web.HTTPSeeOther(case_path(case_id))


def add_routes(app: web.Application) -> None:
    """Register the case pages, their forms, the live fragment and the terminal panel."""
    app.router.add_get(CASES_PATH, cases_list)
    app.router.add_get(NEW_CASE_PATH, new_case_form)
    app.router.add_post(CASES_PATH, create_case)
    app.router.add_get(f"{CASES_PATH}/{{case_id:\\d+}}", case_page)
    app.router.add_get(f"{FRAGMENT_CASES}/{{case_id:\\d+}}/links", case_links_fragment)
    app.router.add_post(f"{CASES_PATH}/{{case_id:\\d+}}/notes", add_note_action)
    app.router.add_post(f"{CASES_PATH}/{{case_id:\\d+}}/links", add_link_action)
    app.router.add_post(f"{CASES_PATH}/{{case_id:\\d+}}/follow-up", follow_up_action)
    app.router.add_post(f"{CASES_PATH}/{{case_id:\\d+}}/assign", assign_action)
    app.router.add_post(f"{CASES_PATH}/{{case_id:\\d+}}/state", state_action)
    add_cases_panel(app)
