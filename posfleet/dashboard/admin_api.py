"""``/api/v1/users``, ``/api/v1/tokens`` and ``/api/v1/audit``: account administration and the
audit log over the API (admin only), the same operations as the admin pages.

Every change takes a ``reason`` (optional when creating) that goes to the audit log with
who made it. Errors are RFC 9457 problems: 400 for a bad field, 404 for an unknown user
or token, 409 for a taken username or a change that would leave no enabled admin.
"""

from __future__ import annotations

from typing import TypeVar

import pydantic
from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.admin_models import (
    AuditList,
    AuditQuery,
    CreatedToken,
    CreateTokenBody,
    CreateUserBody,
    NoQuery,
    PasswordBody,
    ReasonBody,
    SessionsEnded,
    TokenIdPath,
    TokenList,
    UpdateUserBody,
    UserIdPath,
    UserList,
    UserOut,
    validated,
)
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError
from posfleet.dashboard.json_bodies import json_model, json_object_body
from posfleet.dashboard.paging_cursor import cursors
from posfleet.dashboard.query_params import query_model as read_query
from posfleet.dashboard.staff_admin import StaffAdmin
from posfleet.store.accounts import Role
from posfleet.store.audit_query import AuditFilter, query_audit
from posfleet.store.sessions import live_session_counts
from posfleet.store.staff_accounts import ApiToken, find_user, list_api_tokens, list_users

USERS_API = "/api/v1/users"
TOKENS_API = "/api/v1/tokens"
AUDIT_API = "/api/v1/audit"
AUDIT_SCOPE = "audit"
"""The list name the audit log's cursors are signed for (the page's and the API's)."""

M = TypeVar("M", bound=pydantic.BaseModel)
CHANGE_ERRORS = (400, 401, 403, 404, 409)


def query_model(request: web.Request, model: type[M]) -> M:
    """The query string as ``model`` (each parameter at most once; unknown ones refused)."""
    return read_query(request.query, model)


def _path(request: web.Request, model: type[M]) -> M:
    return validated(model, dict(request.match_info))


async def _body(request: web.Request, model: type[M]) -> M:
    query_model(request, NoQuery)
    return validated(model, await json_object_body(request))


def _admin(request: web.Request) -> StaffAdmin:
    return StaffAdmin(request.app[ENGINE_KEY], principal(request))


async def _user_out(request: web.Request, user_id: int) -> UserOut:
    async with request.app[ENGINE_KEY].connect() as conn:
        user = await find_user(conn, user_id)
        counts = await live_session_counts(conn, utcnow())
    if user is None:
        raise NotFoundError("there is no such user")
    return UserOut.of(user, counts.get(user.id, 0))


@api_operation("List staff users", tag="admin", response=UserList, query=NoQuery)
@requires(Role.ADMIN)
async def list_users_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/users``: every user with their open sessions."""
    query_model(request, NoQuery)
    async with request.app[ENGINE_KEY].connect() as conn:
        found = await list_users(conn)
        counts = await live_session_counts(conn, utcnow())
    return json_model(UserList(items=[UserOut.of(u, counts.get(u.id, 0)) for u in found]))


@api_operation(
    "Create a staff user",
    tag="admin",
    response=UserOut,
    status=201,
    body=CreateUserBody,
    query=NoQuery,
    errors=(400, 401, 403, 409),
)
@requires(Role.ADMIN)
async def create_user_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/users`` ``{username, role, password, reason}``."""
    body = await _body(request, CreateUserBody)
    user = await _admin(request).create_user(body.username, body.role, body.password, body.reason)
    response = json_model(UserOut.of(user), 201)
    response.headers["Location"] = f"{USERS_API}/{user.id}"
    return response


@api_operation(
    "Show a staff user",
    tag="admin",
    response=UserOut,
    query=NoQuery,
    path=UserIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.ADMIN)
async def get_user_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/users/{user_id}``."""
    query_model(request, NoQuery)
    return json_model(await _user_out(request, _path(request, UserIdPath).user_id))


@api_operation(
    "Change a user's role, or disable or enable them",
    tag="admin",
    response=UserOut,
    body=UpdateUserBody,
    query=NoQuery,
    path=UserIdPath,
    errors=CHANGE_ERRORS,
)
@requires(Role.ADMIN)
async def update_user_endpoint(request: web.Request) -> web.Response:
    """``PATCH /api/v1/users/{user_id}`` ``{role?, disabled?, reason}``; disabling ends
    the user's sessions on every instance."""
    user_id = _path(request, UserIdPath).user_id
    body = await _body(request, UpdateUserBody)
    if body.role is None and body.disabled is None:
        raise InvalidParameterError("role", "give a new role, or disabled true or false")
    admin = _admin(request)
    if body.role is not None:
        await admin.change_role(user_id, body.role, body.reason)
    if body.disabled is not None:
        await admin.set_disabled(user_id, body.disabled, body.reason)
    return json_model(await _user_out(request, user_id))


@api_operation(
    "Reset a user's password (ends their sessions)",
    tag="admin",
    response=SessionsEnded,
    body=PasswordBody,
    query=NoQuery,
    path=UserIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.ADMIN)
async def reset_password_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{user_id}/password`` ``{password, reason}``."""
    user_id = _path(request, UserIdPath).user_id
    body = await _body(request, PasswordBody)
    ended = await _admin(request).reset_password(user_id, body.password, body.reason)
    return json_model(SessionsEnded(sessions_ended=ended))


@api_operation(
    "Log a user out everywhere",
    tag="admin",
    response=SessionsEnded,
    body=ReasonBody,
    query=NoQuery,
    path=UserIdPath,
    errors=(400, 401, 403, 404),
)
@requires(Role.ADMIN)
async def end_sessions_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/users/{user_id}/sessions/end`` ``{reason}``."""
    user_id = _path(request, UserIdPath).user_id
    body = await _body(request, ReasonBody)
    ended = await _admin(request).end_sessions(user_id, body.reason)
    return json_model(SessionsEnded(sessions_ended=ended))


@api_operation("List API tokens", tag="admin", response=TokenList, query=NoQuery)
@requires(Role.ADMIN)
async def list_tokens_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/tokens``: live tokens first, newest first."""
    query_model(request, NoQuery)
    async with request.app[ENGINE_KEY].connect() as conn:
        found = await list_api_tokens(conn)
    return json_model(TokenList(items=found))


@api_operation(
    "Create an API token (shown once)",
    tag="admin",
    response=CreatedToken,
    status=201,
    body=CreateTokenBody,
    query=NoQuery,
)
@requires(Role.ADMIN)
async def create_token_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/tokens`` ``{name, role, reason}``: the answer holds the token."""
    body = await _body(request, CreateTokenBody)
    record, token = await _admin(request).create_token(body.name, body.role, body.reason)
    response = json_model(CreatedToken(**record.model_dump(), token=token), 201)
    response.headers["Cache-Control"] = "no-store"
    return response


@api_operation(
    "Revoke an API token",
    tag="admin",
    response=ApiToken,
    body=ReasonBody,
    query=NoQuery,
    path=TokenIdPath,
    errors=CHANGE_ERRORS,
)
@requires(Role.ADMIN)
async def revoke_token_endpoint(request: web.Request) -> web.Response:
    """``POST /api/v1/tokens/{token_id}/revoke`` ``{reason}``: refused from then on."""
    token_id = _path(request, TokenIdPath).token_id
    body = await _body(request, ReasonBody)
    return json_model(await _admin(request).revoke_token(token_id, body.reason))


def audit_filter(query: AuditQuery) -> AuditFilter:
    """The store's filter for the parsed query."""
    return AuditFilter(query.actor, query.action, query.target, query.since, query.until)


@api_operation("Read the audit log", tag="admin", response=AuditList, query=AuditQuery)
@requires(Role.ADMIN)
async def audit_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/audit?actor=&action=&target=&since=&until=&limit=&before=``."""
    query = query_model(request, AuditQuery)
    signer = cursors(request.app)
    before = signer.row_id(AUDIT_SCOPE, query.before, "before")
    async with request.app[ENGINE_KEY].connect() as conn:
        page = await query_audit(conn, audit_filter(query), limit=query.limit, before=before)
    following = (
        None if page.next_before is None else signer.id_cursor(AUDIT_SCOPE, page.next_before)
    )
    return json_model(AuditList(items=page.entries, next=following))


def add_routes(app: web.Application) -> None:
    """Register the admin API."""
    app.router.add_get(USERS_API, list_users_endpoint)
    app.router.add_post(USERS_API, create_user_endpoint)
    app.router.add_get(f"{USERS_API}/{{user_id}}", get_user_endpoint)
    app.router.add_patch(f"{USERS_API}/{{user_id}}", update_user_endpoint)
    app.router.add_post(f"{USERS_API}/{{user_id}}/password", reset_password_endpoint)
    app.router.add_post(f"{USERS_API}/{{user_id}}/sessions/end", end_sessions_endpoint)
    app.router.add_get(TOKENS_API, list_tokens_endpoint)
    app.router.add_post(TOKENS_API, create_token_endpoint)
    app.router.add_post(f"{TOKENS_API}/{{token_id}}/revoke", revoke_token_endpoint)
    app.router.add_get(AUDIT_API, audit_endpoint)
