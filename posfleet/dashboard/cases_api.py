"""``/api/v1/cases``: merchant cases, their notes, links, follow-ups and states.

Thin handlers over :class:`posfleet.helpdesk.CaseDesk`: parse with the pydantic models
of :mod:`posfleet.dashboard.case_api_models`, call one action, answer with the model.
Reading needs the viewer role, changing a case support. The page handlers reuse
:func:`desk_errors` so a refusal reads the same on a page and in the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.case_api_models import (
    CaseCreateBody,
    CaseIdPath,
    CaseLinkAnswer,
    CaseLinkBody,
    CaseList,
    CaseListQuery,
    CaseNoteBody,
    CasePatchBody,
    FollowUpFilter,
)
from posfleet.dashboard.case_views import CaseDetail, case_detail, linked_objects
from posfleet.dashboard.errors import (
    InvalidParameterError,
    NotFoundError,
    RequestRejectedError,
)
from posfleet.dashboard.json_bodies import json_model, json_object_body
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import MAX_ROW_ID, shown
from posfleet.dashboard.rollout_body import BodyInvalidError
from posfleet.helpdesk import (
    CaseDesk,
    CaseInputError,
    CaseNotFoundError,
    CaseTransitionError,
    LinkTargetNotFoundError,
    helpdesk_day,
)
from posfleet.store.accounts import Role
from posfleet.store.cases import (
    ACTIVE_STATES,
    CaseDraft,
    CaseFilter,
    CaseRecord,
    CaseState,
    count_follow_ups_due,
    get_case,
    list_case_links,
    list_case_notes,
    list_cases,
)

API_CASES_PATH = "/api/v1/cases"
CASES_SCOPE = "cases"
"""The list name the case list's cursors are signed for (the page's and the API's)."""
M = TypeVar("M", bound=pydantic.BaseModel)


class CaseConflictError(RequestRejectedError):
    """The case's state does not allow the change, or it changed meanwhile."""

    status = 409
    code = "conflict"


@contextmanager
def desk_errors() -> Iterator[None]:
    """Turn the helpdesk's refusals into the dashboard's (404, 400 naming a field, 409)."""
    try:
        yield
    except CaseNotFoundError as exc:
        raise NotFoundError(str(exc)) from None
    except CaseInputError as exc:
        raise InvalidParameterError(exc.field, exc.message) from None
    except LinkTargetNotFoundError as exc:
        raise InvalidParameterError("ref", str(exc)) from None
    except CaseTransitionError as exc:
        raise CaseConflictError(str(exc)) from None


def desk(request: web.Request) -> CaseDesk:
    """The staff actions over the app's database."""
    return CaseDesk(request.app[ENGINE_KEY])


def case_id_of(request: web.Request) -> int:
    """The ``{case_id}`` of the path; a 400 for anything but a row id."""
    raw = request.match_info["case_id"]
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 19 and 1 <= int(raw) <= MAX_ROW_ID):
        raise InvalidParameterError("case_id", f"case id {shown(raw)} must be a number")
    return int(raw)


def parsed(model: type[M], raw: Any) -> M:
    """``raw`` validated by ``model``; a 400 naming every refused field."""
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise BodyInvalidError(
            [(".".join(str(p) for p in e["loc"]) or "body", e["msg"]) for e in exc.errors()]
        ) from None


def states_of(raw: str | None) -> list[CaseState] | None:
    """``open,resolved`` -> those states; nothing: every state but closed; ``all``: None."""
    parts = [p.strip() for p in (raw or "").split(",") if p.strip()]
    if not parts:
        return list(ACTIVE_STATES)
    if "all" in parts:
        return None
    try:
        return [CaseState(p) for p in parts]
    except ValueError:
        names = ", ".join(s.value for s in CaseState)
        raise InvalidParameterError(
            "state", f"state must be {names} or all (comma-separated), not {shown(raw or '')}"
        ) from None


def case_filter(query: CaseListQuery) -> CaseFilter:
    """The store's filter for a list query (the follow-up judged by today's date)."""
    today = helpdesk_day(utcnow())
    low = high = None
    if query.follow_up is FollowUpFilter.DUE_TODAY:
        low = high = today
    elif query.follow_up is FollowUpFilter.OVERDUE:
        high = today.fromordinal(today.toordinal() - 1)
    elif query.follow_up is FollowUpFilter.DUE:
        high = today
    states = states_of(query.state)
    if query.follow_up is not None and states is None:
        states = list(ACTIVE_STATES)  # a closed case has nothing to follow up
    return CaseFilter(
        states=states,
        assignee=query.assignee,
        merchant_id=query.merchant_id,
        terminal_id=query.terminal_id,
        follow_up_from=low,
        follow_up_to=high,
    )


async def load_detail(request: web.Request, case_id: int) -> CaseDetail:
    """One case with its timeline and links as they are now; 404 if there is none."""
    async with request.app[ENGINE_KEY].connect() as conn:
        case = await get_case(conn, case_id)
        if case is None:
            raise NotFoundError(f"no case #{case_id}")
        notes = await list_case_notes(conn, case_id)
        links = await linked_objects(conn, await list_case_links(conn, case_id))
    return case_detail(case, notes, links, helpdesk_day(utcnow()))


@api_operation("List cases", tag="cases", response=CaseList, query=CaseListQuery)
@requires(Role.VIEWER)
async def list_cases_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/cases``: newest first, not closed unless ``state`` says so."""
    query = parsed(CaseListQuery, dict(request.query))
    if len(request.query) != len(set(request.query)):
        raise InvalidParameterError("query", "give each query parameter once")
    signer = cursors(request.app)
    before_id = signer.row_id(CASES_SCOPE, query.before, "before")
    async with request.app[ENGINE_KEY].connect() as conn:
        rows = await list_cases(
            conn, case_filter(query), limit=query.limit + 1, before_id=before_id
        )
        due_today, overdue = await count_follow_ups_due(conn, helpdesk_day(utcnow()))
    items = rows[: query.limit]
    more = len(rows) > query.limit
    following = signer.id_cursor(CASES_SCOPE, items[-1].id) if more else None
    return json_model(CaseList(items=items, next=following, due_today=due_today, overdue=overdue))


@api_operation("Open a case", tag="cases", response=CaseRecord, status=201, body=CaseCreateBody)
@requires(Role.SUPPORT)
async def create_case_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/cases``: open a case for a merchant's call."""
    body = parsed(CaseCreateBody, await json_object_body(request, max_fields=16))
    draft = CaseDraft(**body.model_dump())
    with desk_errors():
        case = await desk(request).open(draft, actor=principal(request).actor)
    return json_model(case, 201)


@api_operation(
    "Show a case", tag="cases", response=CaseDetail, path=CaseIdPath, errors=(400, 401, 403, 404)
)
@requires(Role.VIEWER)
async def get_case_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/cases/{case_id}``: the case, its timeline and links, its timings."""
    if request.query:
        raise InvalidParameterError(next(iter(request.query)), "this takes no query parameters")
    return json_model(await load_detail(request, case_id_of(request)))


async def _apply(work: Awaitable[CaseRecord]) -> CaseRecord:
    with desk_errors():
        return await work


@api_operation(
    "Change a case's state, assignee or follow-up",
    tag="cases",
    response=CaseRecord,
    path=CaseIdPath,
    body=CasePatchBody,
    errors=(400, 401, 403, 404, 409),
)
@requires(Role.SUPPORT)
async def patch_case_endpoint(request: web.Request) -> web.Response:
    """``PATCH /api/v1/cases/{case_id}``: each field given is applied, in one request."""
    case_id = case_id_of(request)
    body = parsed(CasePatchBody, await json_object_body(request, max_fields=8))
    given = body.model_fields_set
    if not given & {"state", "assignee", "follow_up_on"}:
        raise InvalidParameterError("body", "give state, assignee or follow_up_on")
    actions, actor = desk(request), principal(request).actor
    case: CaseRecord | None = None
    if "assignee" in given:
        case = await _apply(actions.assign(case_id, body.assignee, actor=actor))
    if "follow_up_on" in given:
        work = actions.set_follow_up(
            case_id, body.follow_up_on, actor=actor, note=body.follow_up_note
        )
        case = await _apply(work)
    if body.state is not None:
        work = actions.change_state(
            case_id, body.state, actor=actor, reason=body.reason, confirmation=body.confirmation
        )
        case = await _apply(work)
    if case is None:  # state: null alone
        raise InvalidParameterError("state", "state must be one of the case states")
    return json_model(case)


@api_operation(
    "Add a note to a case",
    tag="cases",
    response=CaseRecord,
    status=201,
    path=CaseIdPath,
    body=CaseNoteBody,
    errors=(400, 401, 403, 404),
)
@requires(Role.SUPPORT)
async def add_note_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/cases/{case_id}/notes`` with ``{"text": "..."}``."""
    case_id = case_id_of(request)
    body = parsed(CaseNoteBody, await json_object_body(request, max_fields=2))
    case = await _apply(desk(request).add_note(case_id, body.text, actor=principal(request).actor))
    return json_model(case, 201)


@api_operation(
    "Link an incident, command or playbook run to a case",
    tag="cases",
    response=CaseLinkAnswer,
    status=201,
    also=(200,),
    path=CaseIdPath,
    body=CaseLinkBody,
    errors=(400, 401, 403, 404, 409),
)
@requires(Role.SUPPORT)
async def add_link_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/cases/{case_id}/links``: 201 when linked now, 200 if it was already."""
    case_id = case_id_of(request)
    body = parsed(CaseLinkBody, await json_object_body(request, max_fields=3))
    with desk_errors():
        case, created = await desk(request).link(
            case_id, body.kind, body.ref, actor=principal(request).actor
        )
    return json_model(CaseLinkAnswer(case=case, created=created), 201 if created else 200)


def add_routes(app: web.Application) -> None:
    """Register the cases API."""
    app.router.add_get(API_CASES_PATH, list_cases_endpoint)
    app.router.add_post(API_CASES_PATH, create_case_endpoint)
    app.router.add_get(f"{API_CASES_PATH}/{{case_id}}", get_case_endpoint)
    app.router.add_patch(f"{API_CASES_PATH}/{{case_id}}", patch_case_endpoint)
    app.router.add_post(f"{API_CASES_PATH}/{{case_id}}/notes", add_note_endpoint)
    app.router.add_post(f"{API_CASES_PATH}/{{case_id}}/links", add_link_endpoint)
