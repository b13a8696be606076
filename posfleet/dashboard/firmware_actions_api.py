"""``/api/v1/firmware/actions``: push an artifact to terminals, watch and cancel Actions.

Thin handlers over :mod:`posfleet.firmware.offers`. Reading needs the viewer role;
pushing and cancelling need ops, and both are in the audit log. A push names the
artifact (id, ``name@version`` or a SHA-256 prefix) and the terminals::

    POST /api/v1/firmware/actions
    {"artifact": "pos-os@5.3.0", "terminal_ids": ["T-1", "T-2"], "window": "22:00-06:00",
     "weekdays": "mon-fri", "deadline": "72h", "allow_downgrade_confirmed": false,
     "reason": "CVE-2026-0042"}

and answers 201 with the Actions created and every terminal refused with its reason,
or 422 (a problem listing the refusals) when no terminal can take the image.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import pydantic
from aiohttp import web

from posfleet.contract import MaintenanceWindow
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_models import (
    ActionCounts,
    ActionDetail,
    ActionIdPath,
    ActionListQuery,
    ActionPage,
    ActionSummaryQuery,
    CancelBody,
    CancelledAction,
    PushAnswer,
)
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY, REJECTIONS_KEY
from posfleet.dashboard.error_rendering import PROBLEM_CONTENT_TYPE
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.json_bodies import json_object_body, json_response
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import (
    MAX_ROW_ID,
    id_param,
    query_model,
    refuse_unknown,
    text_param,
)
from posfleet.firmware.action_records import (
    count_by_state,
    get_action,
    list_actions,
    list_events,
)
from posfleet.firmware.action_states import ActionState, ActionTransitionError
from posfleet.firmware.actions import ActionNotFoundError
from posfleet.firmware.errors import ArtifactError, ArtifactNotFoundError
from posfleet.firmware.offers import (
    MAX_PUSH_TERMINALS,
    FirmwareOffers,
    PushRequest,
    PushRequestError,
)
from posfleet.firmware.push_checks import parse_duration, parse_window
from posfleet.store.accounts import Role

FIRMWARE_OFFERS_KEY = web.AppKey("firmware_offers", FirmwareOffers)
"""Set by the central service; without it pushing and cancelling answer 503."""

LIST_PARAMETERS = tuple(ActionListQuery.model_fields)
"""What the list takes: its query model's fields (the handler reads it through the model)."""
ACTIONS_SCOPE = "firmware-actions"
"""The list name the cursors of ``GET /api/v1/firmware/actions`` are signed for."""
SUMMARY_PARAMETERS = ("terminal_id", "artifact_id")
_STATE_NAMES = [s.value for s in ActionState]


class ActionConflictError(RequestRejectedError):
    """The Action's state does not allow this (cancel a finished one)."""

    status = 409
    code = "conflict"


class UnavailableError(RequestRejectedError):
    """This server cannot offer firmware (no broker connection configured)."""

    status = 503
    code = "unavailable"


class BodyInvalidError(InvalidParameterError):
    """A request body whose fields fail validation; every field is named."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__(problems[0][0], "; ".join(f"{name}: {why}" for name, why in problems))
        self.problems = problems

    @property
    def invalid_params(self) -> list[tuple[str, str]]:
        """Each refused field with its reason."""
        return self.problems


class PushBody(pydantic.BaseModel):
    """The body of a push."""

    model_config = pydantic.ConfigDict(extra="forbid")

    artifact: Annotated[str, pydantic.Field(min_length=1, max_length=200)] | int
    terminal_ids: Annotated[
        list[Annotated[str, pydantic.Field(min_length=1, max_length=64)]],
        pydantic.Field(min_length=1, max_length=MAX_PUSH_TERMINALS),
    ]
    window: Annotated[str, pydantic.Field(max_length=32)] | MaintenanceWindow | None = None
    weekdays: Annotated[str, pydantic.Field(max_length=64)] | None = None
    deadline: (
        Annotated[str, pydantic.Field(max_length=32)] | Annotated[int, pydantic.Field(gt=0)] | None
    ) = None
    """Seconds, or a text such as ``72h``; the server's default when absent."""
    allow_downgrade_confirmed: bool = False
    reason: Annotated[str, pydantic.Field(max_length=4000)] = ""

    def to_request(self) -> PushRequest:
        """The domain request; :class:`BodyInvalidError` naming the field that is off."""
        try:
            if isinstance(self.window, MaintenanceWindow):
                window = self.window
            else:
                window = parse_window(self.window or "22:00-06:00", self.weekdays)
        except ValueError as exc:
            raise BodyInvalidError([("window", str(exc))]) from None
        deadline: timedelta | None = None
        if self.deadline is not None:
            try:
                deadline = (
                    timedelta(seconds=self.deadline)
                    if isinstance(self.deadline, int)
                    else parse_duration(self.deadline)
                )
            except ValueError as exc:
                raise BodyInvalidError([("deadline", str(exc))]) from None
        try:
            return PushRequest(
                artifact=str(self.artifact),
                terminal_ids=self.terminal_ids,
                window=window,
                allow_downgrade_confirmed=self.allow_downgrade_confirmed,
                deadline=deadline,
                reason=self.reason,
            )
        except PushRequestError as exc:
            field = "deadline" if "deadline" in str(exc) else "terminal_ids"
            raise BodyInvalidError([(field, str(exc))]) from None


def _json(payload: Any, status: int = 200) -> web.Response:
    return json_response(payload, status)


def _offers(request: web.Request) -> FirmwareOffers:
    found = request.app.get(FIRMWARE_OFFERS_KEY)
    if found is None:
        raise UnavailableError("firmware offers need the central service's broker connection")
    return found


async def _body(request: web.Request) -> dict[str, Any]:
    return await json_object_body(request)


def _action_id(request: web.Request) -> int:
    raw = request.match_info["action_id"]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ROW_ID:
        raise InvalidParameterError("action_id", f"action id {raw[:40]!r} must be a number")
    return int(raw)


def counts_json(counts: dict[ActionState, int]) -> dict[str, Any]:
    """Counts per state as the API shows them: ``by_state``, ``open`` and ``total``."""
    by_state = {state.value: n for state, n in counts.items()}
    open_ = sum(n for state, n in counts.items() if not state.final)
    return {"by_state": by_state, "open": open_, "total": sum(by_state.values())}


@api_operation(
    "Push firmware to terminals",
    tag="firmware",
    response=PushAnswer,
    status=201,
    body=PushBody,
    errors=(400, 404, 422, 503),
)
@requires(Role.OPS)
async def push_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/firmware/actions``: one Action per terminal that can take the image."""
    offers = _offers(request)
    try:
        body = PushBody.model_validate(await _body(request))
    except pydantic.ValidationError as exc:
        problems = [
            (".".join(str(p) for p in error["loc"]) or "body", error["msg"])
            for error in exc.errors()
        ]
        raise BodyInvalidError(problems) from None
    try:
        result = await offers.push(body.to_request(), actor=principal(request).actor)
    except ArtifactNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ArtifactError as exc:
        raise BodyInvalidError([("artifact", str(exc))]) from None
    artifact = {
        "id": result.artifact.id,
        "name": result.artifact.name,
        "version": result.artifact.version,
        "sha256": result.artifact.sha256,
    }
    if not result.created:
        return _refused_problem(request, artifact, result.refused)
    return _json(
        {
            "artifact": artifact,
            "created": result.created,
            "refused": result.refused,
            "offered": result.offered,
        },
        201,
    )


def _refused_problem(
    request: web.Request, artifact: dict[str, Any], refused: list[Any]
) -> web.Response:
    detail = "no terminal can take this image: " + "; ".join(r.message for r in refused[:5])
    request.app[REJECTIONS_KEY].count("push_refused", detail)
    problem = {
        "type": "about:blank",
        "title": "Unprocessable Content",
        "status": 422,
        "detail": detail,
        "code": "push_refused",
        "artifact": artifact,
        "refused": pydantic.TypeAdapter(Any).dump_python(refused, mode="json"),
    }
    return web.json_response(problem, status=422, content_type=PROBLEM_CONTENT_TYPE)


@api_operation("List firmware Actions", tag="firmware", response=ActionPage, query=ActionListQuery)
@requires(Role.VIEWER)
async def list_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/firmware/actions``: newest first, with counts per state.

    Filters: ``state`` (comma-separated), ``terminal_id``, ``artifact_id``; paging with
    ``limit`` and ``before`` (the ``next`` of the previous page). The counts follow
    the terminal and artifact filters, not the state filter.
    """
    query = query_model(request.query, ActionListQuery)
    states: list[ActionState] = []
    for part in filter(None, (query.state or "").split(",")):
        if part not in _STATE_NAMES:
            raise InvalidParameterError("state", f"state is one of {', '.join(_STATE_NAMES)}")
        states.append(ActionState(part))
    signer = cursors(request.app)
    limit = query.limit or 100
    async with request.app[ENGINE_KEY].connect() as conn:
        rows = await list_actions(
            conn,
            states=states or None,
            terminal_id=query.terminal_id,
            artifact_id=query.artifact_id,
            limit=limit + 1,
            before_id=signer.row_id(ACTIONS_SCOPE, query.before, "before"),
        )
        counts = await count_by_state(
            conn, terminal_id=query.terminal_id, artifact_id=query.artifact_id
        )
    items = rows[:limit]
    more = len(rows) > limit
    return _json(
        {
            "items": items,
            "next": signer.id_cursor(ACTIONS_SCOPE, items[-1].id) if more else None,
            "counts": counts_json(counts),
        }
    )


@api_operation(
    "Count firmware Actions by state",
    tag="firmware",
    response=ActionCounts,
    query=ActionSummaryQuery,
)
@requires(Role.VIEWER)
async def summary_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/firmware/actions/summary[?terminal_id=&artifact_id=]``: counts per state."""
    query = request.query
    refuse_unknown(query, SUMMARY_PARAMETERS)
    async with request.app[ENGINE_KEY].connect() as conn:
        counts = await count_by_state(
            conn,
            terminal_id=text_param(query, "terminal_id", 64),
            artifact_id=id_param(query, "artifact_id", "an artifact id"),
        )
    return _json(counts_json(counts))


@api_operation(
    "Show a firmware Action",
    tag="firmware",
    response=ActionDetail,
    path=ActionIdPath,
    errors=(400, 404),
)
@requires(Role.VIEWER)
async def get_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/firmware/actions/{id}``: the Action and its history, oldest first."""
    action_id = _action_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        action = await get_action(conn, action_id)
        if action is None:
            raise NotFoundError(f"no firmware action #{action_id}")
        events = await list_events(conn, action_id)
    return _json({"action": action, "events": events})


@api_operation(
    "Cancel a firmware Action",
    tag="firmware",
    response=CancelledAction,
    body=CancelBody,
    path=ActionIdPath,
    errors=(400, 404, 409, 503),
)
@requires(Role.OPS)
async def cancel_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/firmware/actions/{id}/cancel`` with ``{"reason": "..."}``.

    The cancelled Action, with ``terminal_notice``: whether its terminal was told.
    """
    action_id = _action_id(request)
    body = await _body(request)
    reason = body.get("reason", "")
    if not isinstance(reason, str) or len(reason) > 4000:
        raise InvalidParameterError("reason", "reason must be a text of at most 4000 characters")
    try:
        cancelled = await _offers(request).cancel_and_tell(
            action_id, actor=principal(request).actor, reason=reason
        )
    except ActionNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except ActionTransitionError as exc:
        raise ActionConflictError(str(exc)) from None
    notice = {"sent": cancelled.notice.sent, "text": cancelled.notice.text}
    return _json({**cancelled.action.model_dump(mode="json"), "terminal_notice": notice})


def add_routes(app: web.Application) -> None:
    """Register the firmware Action endpoints."""
    app.router.add_post("/api/v1/firmware/actions", push_endpoint)
    app.router.add_get("/api/v1/firmware/actions", list_endpoint)
    app.router.add_get("/api/v1/firmware/actions/summary", summary_endpoint)
    app.router.add_get("/api/v1/firmware/actions/{action_id}", get_endpoint)
    app.router.add_post("/api/v1/firmware/actions/{action_id}/cancel", cancel_endpoint)
