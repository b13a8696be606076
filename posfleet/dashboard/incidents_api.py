"""``/api/v1/incidents``: incidents, their timeline, staff actions, playbooks and analytics.

Thin handlers over :mod:`posfleet.diagnostics`: parse, call one domain function, render.
Reading needs the viewer role; changing an incident needs support.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import ContractError, validate_terminal_id
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import (
    AnalyticsQuery,
    AssignBody,
    EscalateBody,
    IncidentDetail,
    IncidentIdPath,
    IncidentListQuery,
    IncidentPage,
    NoQuery,
    NoteBody,
    PlaybookBody,
    PlaybookRuns,
    ResolveBody,
)
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.incident_reading import INCIDENTS_SCOPE
from posfleet.dashboard.json_bodies import json_model, json_object_body, json_response
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import (
    MAX_ROW_ID,
    choice_param,
    int_param,
    query_model,
    refuse_unknown,
    shown,
    single,
    time_param,
)
from posfleet.diagnostics.analytics import Bucket, IncidentAnalytics, incident_analytics
from posfleet.diagnostics.errors import (
    DiagnosticsError,
    IncidentNotFoundError,
    IncidentTransitionError,
    PlaybookError,
    PlaybookTargetError,
)
from posfleet.diagnostics.incident_actions import IncidentActions
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.diagnostics.rule_model import Escalation
from posfleet.store.accounts import Role
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentState,
    get_incident,
    list_incidents,
    list_notes,
    list_playbook_runs,
)

INCIDENT_ACTIONS_KEY = web.AppKey("incident_actions", IncidentActions)
"""Optional: staff actions with webhook notifications; a plain one is used when absent."""

PLAYBOOK_RUNNER_KEY = web.AppKey("playbook_runner", PlaybookRunner)
"""Optional: without a runner (no broker), starting a playbook answers 503."""

MAX_BODY_FIELDS = 16


def _json(payload: Any, status: int = 200) -> web.Response:
    return json_response(payload, status)


def _actions(request: web.Request) -> IncidentActions:
    found = request.app.get(INCIDENT_ACTIONS_KEY)
    return found if found is not None else IncidentActions(request.app[ENGINE_KEY])


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["incident_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_ROW_ID):
        raise InvalidParameterError("incident_id", f"incident id {shown(raw)} must be a number")
    return int(raw)


def _states(query: MultiMapping[str]) -> list[IncidentState] | None:
    """``state=open,acknowledged`` (or repeated); ``all`` or nothing: every state."""
    parts = [p.strip() for raw in query.getall("state", []) for p in raw.split(",")]
    parts = [p for p in parts if p]
    if not parts or "all" in parts:
        return None
    states: list[IncidentState] = []
    for part in parts:
        try:
            states.append(IncidentState(part))
        except ValueError:
            raise InvalidParameterError(
                "state",
                f"state must be open, acknowledged, resolved or all (comma-separated), "
                f"not {shown(part)}",
            ) from None
    return states


def _terminal_id(query: MultiMapping[str]) -> str | None:
    raw = single(query, "terminal_id")
    if raw is not None:
        try:
            validate_terminal_id(raw)
        except ContractError:
            raise InvalidParameterError(
                "terminal_id",
                "terminal_id must be a terminal id (1 to 64 letters, digits, '_' or '-'), "
                f"not {shown(raw)}",
            ) from None
    return raw


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object_body(request, max_fields=MAX_BODY_FIELDS)


def _text(body: dict[str, Any], name: str, *, required: bool = False, limit: int = 4000) -> str:
    value = body.get(name, "")
    if not isinstance(value, str) or len(value) > limit or (required and not value.strip()):
        raise InvalidParameterError(name, f"{name} must be a text of at most {limit} characters")
    return value


async def _act(coro: Any) -> IncidentRecord:
    try:
        record: IncidentRecord = await coro
    except IncidentNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except IncidentTransitionError as exc:
        raise RequestRejectedError(str(exc)) from None
    return record


LIST_PARAMETERS = tuple(IncidentListQuery.model_fields)
"""What the list takes: its query model's fields (the handler reads it through the model)."""

ANALYTICS_PARAMETERS = ("since", "until", "bucket", "top")


@api_operation("List incidents", tag="incidents", response=IncidentPage, query=IncidentListQuery)
@requires(Role.VIEWER)
async def list_incidents_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents``: newest first, one page.

    Filters, each named after the field it matches: ``state`` (comma-separated, or
    ``all``), ``kind``, ``terminal_id``, ``rule_id``, ``severity``, ``merchant_id``,
    ``site_id``, ``parent_id`` (a fleet incident's children); ``top_level=1`` leaves out
    fleet incidents' children; ``limit`` and ``before`` (the ``next`` of the previous
    page) page through. Any other parameter is refused.
    """
    query = query_model(request.query, IncidentListQuery)
    signer = cursors(request.app)
    limit = query.limit or 100
    async with request.app[ENGINE_KEY].connect() as conn:
        rows = await list_incidents(
            conn,
            states=_states(request.query),
            kind=query.kind,
            terminal_id=query.terminal_id,
            rule_id=query.rule_id,
            severity=query.severity.value if query.severity else None,
            merchant_id=query.merchant_id,
            site_id=query.site_id,
            parent_id=query.parent_id,
            top_level=bool(query.top_level),
            limit=limit + 1,
            before_id=signer.row_id(INCIDENTS_SCOPE, query.before, "before"),
        )
    items = rows[:limit]
    more = len(rows) > limit
    next_cursor = signer.id_cursor(INCIDENTS_SCOPE, items[-1].id) if more else None
    return json_model(IncidentPage(items=items, next=next_cursor))


@api_operation(
    "Show an incident",
    tag="incidents",
    response=IncidentDetail,
    query=NoQuery,
    path=IncidentIdPath,
    errors=(400, 404),
)
@requires(Role.VIEWER)
async def get_incident_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents/{id}``: the incident, its timeline, runs and children.

    A fleet incident's runs are those on its terminals, as its page shows them.
    """
    refuse_unknown(request.query, ())
    incident_id = _incident_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_incident(conn, incident_id)
        if record is None:
            raise NotFoundError(f"no incident #{incident_id}")
        notes = await list_notes(conn, incident_id)
        runs = await list_playbook_runs(
            conn, incident_id, with_children=record.kind is IncidentKind.FLEET
        )
        children = (
            await list_incidents(conn, parent_id=incident_id, limit=500)
            if record.kind is IncidentKind.FLEET
            else []
        )
    return _json({"incident": record, "notes": notes, "playbook_runs": runs, "children": children})


@api_operation(
    "Incident analytics", tag="incidents", response=IncidentAnalytics, query=AnalyticsQuery
)
@requires(Role.VIEWER)
async def analytics_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents/analytics?since=&until=&bucket=hour|day&top=``."""
    query = request.query
    refuse_unknown(query, ANALYTICS_PARAMETERS)
    until = time_param(query, "until", datetime.now(UTC))
    since = time_param(query, "since", until - timedelta(days=30))
    bucket = choice_param(query, "bucket", [b.value for b in Bucket]) or Bucket.DAY.value
    async with request.app[ENGINE_KEY].connect() as conn:
        report = await incident_analytics(
            conn,
            since=since,
            until=until,
            bucket=Bucket(bucket),
            top=int_param(query, "top", 10, 1, 100),
        )
    return _json(report)


@api_operation(
    "Acknowledge an incident",
    tag="incidents",
    response=IncidentRecord,
    path=IncidentIdPath,
    errors=(400, 404),
)
@requires(Role.SUPPORT)
async def acknowledge_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/ack``."""
    actor = principal(request).actor
    return _json(await _act(_actions(request).acknowledge(_incident_id(request), actor=actor)))


@api_operation(
    "Resolve an incident",
    tag="incidents",
    response=IncidentRecord,
    body=ResolveBody,
    path=IncidentIdPath,
    errors=(400, 404),
)
@requires(Role.SUPPORT)
async def resolve_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/resolve`` with ``{"resolution": "..."}``."""
    body = await _body(request)
    actor = principal(request).actor
    action = _actions(request).resolve(
        _incident_id(request), actor=actor, resolution=_text(body, "resolution")
    )
    return _json(await _act(action))


@api_operation(
    "Assign an incident",
    tag="incidents",
    response=IncidentRecord,
    body=AssignBody,
    path=IncidentIdPath,
    errors=(400, 404),
)
@requires(Role.SUPPORT)
async def assign_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/assign`` with ``{"assignee": "alice"}`` (null: nobody)."""
    body = await _body(request)
    assignee = body.get("assignee")
    if assignee is not None and (not isinstance(assignee, str) or not 0 < len(assignee) <= 128):
        raise InvalidParameterError("assignee", "assignee must be a user name or null")
    actor = principal(request).actor
    return _json(await _act(_actions(request).assign(_incident_id(request), assignee, actor=actor)))


@api_operation(
    "Add a note to an incident",
    tag="incidents",
    response=IncidentRecord,
    body=NoteBody,
    path=IncidentIdPath,
    status=201,
    errors=(400, 404),
)
@requires(Role.SUPPORT)
async def note_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/notes`` with ``{"text": "..."}``."""
    body = await _body(request)
    text = _text(body, "text", required=True)
    actor = principal(request).actor
    return _json(await _act(_actions(request).note(_incident_id(request), text, actor=actor)), 201)


@api_operation(
    "Escalate an incident",
    tag="incidents",
    response=IncidentRecord,
    body=EscalateBody,
    path=IncidentIdPath,
    errors=(400, 404),
)
@requires(Role.SUPPORT)
async def escalate_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/escalate`` with ``{"to": "on_site"|"swap", "reason"}``."""
    body = await _body(request)
    try:
        to = Escalation(str(body.get("to")))
    except ValueError:
        raise InvalidParameterError("to", "to is remote_fix, on_site or swap") from None
    actor = principal(request).actor
    action = _actions(request).escalate(
        _incident_id(request), to, actor=actor, reason=_text(body, "reason")
    )
    return _json(await _act(action))


@api_operation(
    "Run a playbook on an incident",
    tag="incidents",
    response=PlaybookRuns,
    body=PlaybookBody,
    path=IncidentIdPath,
    errors=(400, 404, 503),
)
@requires(Role.SUPPORT)
async def run_playbook_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/playbooks`` with ``{"playbook": "card_payments_failing"}``.

    On a fleet incident the playbook runs on every affected terminal, or with
    ``"terminal": "T-1"`` on that one alone (``"*"``: every one), each run recorded on
    the terminal's own incident, as from the incident page. Waits for the runs to end
    (every run has a server-side deadline) and returns them: ``{"runs": [...]}``.
    """
    runner = request.app.get(PLAYBOOK_RUNNER_KEY)
    if runner is None:
        raise web.HTTPServiceUnavailable(reason="playbooks need the broker; none is configured")
    body = await _body(request)
    incident_id = _incident_id(request)
    name = _text(body, "playbook", required=True, limit=64)
    terminal = body.get("terminal")
    if terminal is not None and (not isinstance(terminal, str) or not 0 < len(terminal) <= 64):
        raise InvalidParameterError(
            "terminal", 'terminal must be one of the incident\'s terminal ids, or "*" for all'
        )
    try:
        runs = await runner.run_for_incident(
            name, incident_id, terminal=terminal, started_by=principal(request).actor
        )
    except IncidentNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except PlaybookTargetError as exc:
        raise InvalidParameterError("terminal", str(exc)) from None
    except PlaybookError as exc:
        raise InvalidParameterError("playbook", str(exc)) from None
    except DiagnosticsError as exc:
        raise RequestRejectedError(str(exc)) from None
    return _json({"runs": runs})


def add_routes(app: web.Application) -> None:
    """Register the incident endpoints."""
    app.router.add_get("/api/v1/incidents", list_incidents_endpoint)
    app.router.add_get("/api/v1/incidents/analytics", analytics_endpoint)
    app.router.add_get("/api/v1/incidents/{incident_id}", get_incident_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/ack", acknowledge_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/resolve", resolve_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/assign", assign_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/notes", note_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/escalate", escalate_endpoint)
    app.router.add_post("/api/v1/incidents/{incident_id}/playbooks", run_playbook_endpoint)
