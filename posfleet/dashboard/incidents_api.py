"""``/api/v1/incidents``: incidents, their timeline, staff actions, playbooks and analytics.

Thin handlers over :mod:`posfleet.diagnostics`: parse, call one domain function, render.
Reading needs the viewer role; changing an incident needs support.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pydantic
from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.diagnostics.analytics import Bucket, incident_analytics
from posfleet.diagnostics.errors import (
    DiagnosticsError,
    IncidentNotFoundError,
    IncidentTransitionError,
    PlaybookError,
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
    return web.Response(
        status=status,
        text=json.dumps(pydantic.TypeAdapter(Any).dump_python(payload, mode="json")),
        content_type="application/json",
    )


def _actions(request: web.Request) -> IncidentActions:
    found = request.app.get(INCIDENT_ACTIONS_KEY)
    return found if found is not None else IncidentActions(request.app[ENGINE_KEY])


def _incident_id(request: web.Request) -> int:
    raw = request.match_info["incident_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise InvalidParameterError("incident_id", f"incident id {raw!r} must be a number")
    return int(raw)


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidParameterError(name, f"{name} must be a whole number from {low} to {high}")
    return int(raw)


def _time_param(request: web.Request, name: str, default: datetime) -> datetime:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(name, f"{name} must be an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise RequestRejectedError("the request body must be a JSON object") from None
    if not isinstance(body, dict) or len(body) > MAX_BODY_FIELDS:
        raise RequestRejectedError("the request body must be a small JSON object")
    return body


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


@requires(Role.VIEWER)
async def list_incidents_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents``: newest first, one page.

    Filters: ``state`` (comma-separated), ``terminal_id``, ``rule_id``, ``kind``,
    ``top_level=1`` (leave out fleet incidents' children); ``limit``, ``before`` (paging).
    """
    states: list[IncidentState] = []
    for part in filter(None, request.query.get("state", "").split(",")):
        try:
            states.append(IncidentState(part))
        except ValueError:
            raise InvalidParameterError(
                "state", "state is open, acknowledged or resolved"
            ) from None
    kind = request.query.get("kind")
    if kind is not None and kind not in {k.value for k in IncidentKind}:
        raise InvalidParameterError("kind", "kind is terminal or fleet")
    before = request.query.get("before")
    if before is not None and not before.isdigit():
        raise InvalidParameterError("before", "before must be an incident id")
    async with request.app[ENGINE_KEY].connect() as conn:
        items = await list_incidents(
            conn,
            states=states or None,
            kind=IncidentKind(kind) if kind else None,
            terminal_id=request.query.get("terminal_id") or None,
            rule_id=request.query.get("rule_id") or None,
            top_level=request.query.get("top_level", "") in ("1", "true"),
            limit=_int_param(request, "limit", 100, 1, 500),
            before_id=int(before) if before else None,
        )
    next_before = items[-1].id if items else None
    return _json({"items": items, "next_before": next_before})


@requires(Role.VIEWER)
async def get_incident_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents/{id}``: the incident, its timeline, runs and children."""
    incident_id = _incident_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_incident(conn, incident_id)
        if record is None:
            raise NotFoundError(f"no incident #{incident_id}")
        notes = await list_notes(conn, incident_id)
        runs = await list_playbook_runs(conn, incident_id)
        children = (
            await list_incidents(conn, parent_id=incident_id, limit=500)
            if record.kind is IncidentKind.FLEET
            else []
        )
    return _json({"incident": record, "notes": notes, "playbook_runs": runs, "children": children})


@requires(Role.VIEWER)
async def analytics_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/incidents/analytics?since=&until=&bucket=hour|day&top=``."""
    until = _time_param(request, "until", datetime.now(UTC))
    since = _time_param(request, "since", until - timedelta(days=30))
    bucket = request.query.get("bucket", "day")
    if bucket not in {b.value for b in Bucket}:
        raise InvalidParameterError("bucket", "bucket is hour or day")
    async with request.app[ENGINE_KEY].connect() as conn:
        report = await incident_analytics(
            conn,
            since=since,
            until=until,
            bucket=Bucket(bucket),
            top=_int_param(request, "top", 10, 1, 100),
        )
    return _json(report)


@requires(Role.SUPPORT)
async def acknowledge_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/ack``."""
    actor = principal(request).actor
    return _json(await _act(_actions(request).acknowledge(_incident_id(request), actor=actor)))


@requires(Role.SUPPORT)
async def resolve_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/resolve`` with ``{"resolution": "..."}``."""
    body = await _body(request)
    actor = principal(request).actor
    action = _actions(request).resolve(
        _incident_id(request), actor=actor, resolution=_text(body, "resolution")
    )
    return _json(await _act(action))


@requires(Role.SUPPORT)
async def assign_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/assign`` with ``{"assignee": "alice"}`` (null: nobody)."""
    body = await _body(request)
    assignee = body.get("assignee")
    if assignee is not None and (not isinstance(assignee, str) or not 0 < len(assignee) <= 128):
        raise InvalidParameterError("assignee", "assignee must be a user name or null")
    actor = principal(request).actor
    return _json(await _act(_actions(request).assign(_incident_id(request), assignee, actor=actor)))


@requires(Role.SUPPORT)
async def note_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/notes`` with ``{"text": "..."}``."""
    body = await _body(request)
    text = _text(body, "text", required=True)
    actor = principal(request).actor
    return _json(await _act(_actions(request).note(_incident_id(request), text, actor=actor)), 201)


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


@requires(Role.SUPPORT)
async def run_playbook_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/incidents/{id}/playbooks`` with ``{"playbook": "card_payments_failing"}``.

    Waits for the run to end (every run has a server-side deadline) and returns it.
    """
    runner = request.app.get(PLAYBOOK_RUNNER_KEY)
    if runner is None:
        raise web.HTTPServiceUnavailable(reason="playbooks need the broker; none is configured")
    body = await _body(request)
    incident_id = _incident_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_incident(conn, incident_id)
    if record is None or record.terminal_id is None:
        raise NotFoundError(f"no terminal incident #{incident_id}")
    try:
        run = await runner.run(
            _text(body, "playbook", required=True, limit=64),
            record.terminal_id,
            started_by=principal(request).actor,
            incident_id=incident_id,
        )
    except PlaybookError as exc:
        raise InvalidParameterError("playbook", str(exc)) from None
    except DiagnosticsError as exc:
        raise RequestRejectedError(str(exc)) from None
    return _json(run)


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
