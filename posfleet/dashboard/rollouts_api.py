"""``/api/v1/rollouts``: fleet firmware updates in waves, created, previewed and steered.

Thin handlers over :class:`~posfleet.dashboard.rollout_service.RolloutService`. Reading
needs the viewer role. Creating, approving, starting, resuming, aborting and rolling back
need ops, pausing (the emergency brake) support: the routes let support staff through and
the store decides, so that a refused attempt is a 403 problem *and* a line in the audit
log (``rollout.start.refused``, with the role and why); a viewer is refused at the door,
as on every route that changes something. Creating::

    POST /api/v1/rollouts
    {"name": "pos-os 5.3.0 Berlin", "artifact": "pos-os@5.3.0",
     "target": {"models": ["V400m"], "site_ids": ["S-BERLIN-01"]},
     "policy": {"waves": [{"percent": 10}, {"percent": 100}], "offers_per_minute": 30,
                "window": {"start": "22:00", "end": "05:00", "weekdays": [0, 1, 2, 3, 4]},
                "require_second_approver": true},
     "reason_code": "security_fix", "reason": "CVE-2026-0042"}

``target`` and ``policy`` are the JSON ``GET /api/v1/rollouts/{id}`` shows (durations in
seconds: ``soak_s``, ``action_deadline_s``, ``max_offline_s``); what is left out takes
its default. Then ``POST .../{id}/preview`` (the dry run; a draft becomes previewed) and
``POST .../{id}/{approve|request_approval|start|pause|resume|abort|rollback}`` with
``{"reason_code": "...", "reason": "..."}``. Errors are RFC 9457 problems.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import (
    NoQuery,
    PreviewQuery,
    RolloutCommandPath,
    RolloutIdPath,
    RolloutListQuery,
    RolloutPage,
    RolloutPreviewShown,
    RolloutShown,
)
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.json_bodies import json_object_body
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import (
    MAX_ROW_ID,
    int_param,
    query_model,
    refuse_unknown,
)
from posfleet.dashboard.rollout_body import CommandBody, CreateBody
from posfleet.dashboard.rollout_service import (
    COMMANDS,
    PREVIEW_ROWS_PER_WAVE,
    RolloutService,
    parse_states,
    preview_json,
)
from posfleet.store.accounts import Role

ROLLOUTS_API = "/api/v1/rollouts"
LIST_PARAMETERS = tuple(RolloutListQuery.model_fields)
"""What the list takes: its query model's fields (the handler reads it through the model)."""
ROLLOUTS_SCOPE = "rollouts"
"""The list name the cursors of ``GET /api/v1/rollouts`` are signed for."""
PREVIEW_PARAMETERS = ("per_wave",)


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(payload), content_type="application/json")


def service(request: web.Request) -> RolloutService:
    """The rollout operations as the request's principal."""
    who = principal(request)
    return RolloutService.for_request(request.app, actor=who.actor, role=who.role)


def rollout_id(request: web.Request) -> int:
    """The ``{rollout_id}`` of the path; 400 unless it is a plain number."""
    raw = request.match_info["rollout_id"]
    # At most 19 digits: int() of thousands of digits is itself an error (and slow).
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19) or not 1 <= int(raw) <= MAX_ROW_ID:
        raise InvalidParameterError("rollout_id", f"rollout id {raw[:40]!r} must be a number")
    return int(raw)


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object_body(request)


@api_operation("List rollouts", tag="rollouts", response=RolloutPage, query=RolloutListQuery)
@requires(Role.VIEWER)
async def list_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/rollouts?state=running,paused&limit=&before=``: newest first."""
    query = query_model(request.query, RolloutListQuery)
    signer = cursors(request.app)
    limit = query.limit or 50
    rows = await service(request).list(
        states=parse_states(query.state),
        limit=limit + 1,
        before_id=signer.row_id(ROLLOUTS_SCOPE, query.before, "before"),
    )
    items = rows[:limit]
    shown = [{k: v for k, v in r.to_json().items() if k != "transitions"} for r in items]
    more = len(rows) > limit
    return _json(
        {"items": shown, "next": signer.id_cursor(ROLLOUTS_SCOPE, items[-1].id) if more else None}
    )


@api_operation(
    "Create a rollout (a draft)",
    tag="rollouts",
    response=RolloutShown,
    status=201,
    query=NoQuery,
    body=CreateBody,
    errors=(400, 403, 404, 409, 422),
)
@requires(Role.SUPPORT)
async def create_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/rollouts``: a draft (ops; a refusal is audited)."""
    refuse_unknown(request.query, ())
    created = await service(request).create(await _body(request))
    response = _json(created.to_json(), 201)
    response.headers["Location"] = f"{ROLLOUTS_API}/{created.id}"
    return response


@api_operation(
    "Show a rollout",
    tag="rollouts",
    response=RolloutShown,
    query=NoQuery,
    path=RolloutIdPath,
    errors=(400, 404),
)
@requires(Role.VIEWER)
async def get_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/rollouts/{id}``: policy, waves with counts and gate figures, history."""
    refuse_unknown(request.query, ())
    return _json((await service(request).get(rollout_id(request))).to_json())


def _per_wave(request: web.Request) -> int:
    query = request.query
    refuse_unknown(query, PREVIEW_PARAMETERS)
    return int_param(query, "per_wave", PREVIEW_ROWS_PER_WAVE, 0, 100_000)


@api_operation(
    "Preview a rollout (dry run)",
    tag="rollouts",
    response=RolloutPreviewShown,
    query=PreviewQuery,
    path=RolloutIdPath,
    errors=(400, 404, 409),
)
@requires(Role.VIEWER)
async def preview_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/rollouts/{id}/preview?per_wave=100``: the dry run, changing nothing
    (a draft is refused with 409: it is previewed with a POST)."""
    per_wave = _per_wave(request)
    record, preview = await service(request).preview(rollout_id(request), store=False)
    return _json(preview_json(record, preview, per_wave=per_wave))


@api_operation(
    "Preview a draft rollout, marking it previewed",
    tag="rollouts",
    response=RolloutPreviewShown,
    query=PreviewQuery,
    path=RolloutIdPath,
    errors=(400, 404, 409),
)
@requires(Role.OPS)
async def run_preview_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/rollouts/{id}/preview``: the dry run; a draft becomes previewed."""
    per_wave = _per_wave(request)
    record, preview = await service(request).preview(rollout_id(request), store=True)
    return _json(preview_json(record, preview, per_wave=per_wave))


@api_operation(
    "Steer a rollout: approve, start, pause, resume, abort, roll back",
    tag="rollouts",
    response=RolloutShown,
    query=NoQuery,
    body=CommandBody,
    path=RolloutCommandPath,
    errors=(400, 403, 404, 409, 422),
)
@requires(Role.SUPPORT)
async def command_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/rollouts/{id}/{command}`` with ``reason_code`` and ``reason``."""
    refuse_unknown(request.query, ())
    command = request.match_info["command"]
    moved = await service(request).command(rollout_id(request), command, await _body(request))
    return _json(moved.to_json())


def add_routes(app: web.Application) -> None:
    """Register the rollout endpoints."""
    app.router.add_get(ROLLOUTS_API, list_endpoint)
    app.router.add_post(ROLLOUTS_API, create_endpoint)
    app.router.add_get(f"{ROLLOUTS_API}/{{rollout_id}}", get_endpoint)
    app.router.add_get(f"{ROLLOUTS_API}/{{rollout_id}}/preview", preview_endpoint)
    app.router.add_post(f"{ROLLOUTS_API}/{{rollout_id}}/preview", run_preview_endpoint)
    commands = "|".join(COMMANDS)
    app.router.add_post(f"{ROLLOUTS_API}/{{rollout_id}}/{{command:{commands}}}", command_endpoint)
