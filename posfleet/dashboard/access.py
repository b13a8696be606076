"""Who may call what: per-route role requirements and the middleware that enforces them.

Two ways in, kept apart on purpose: the API (``/api/``) accepts only
``Authorization: Bearer <token>``, which a browser never attaches on its own, so the API
needs no CSRF defence; pages accept only the session cookie, and every request that may
change something (any method but GET, HEAD, OPTIONS) must carry the session's CSRF token,
checked here for every such route at once. A route that declares no rule is refused when
the app is built.

A session cookie is signed, which refuses forgeries without a query; whether it is still
live is decided by the database (:mod:`posfleet.store.sessions`), so a logout or a
disabled account ends it on every instance and across restarts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import urlencode

from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.app_keys import (
    ENGINE_KEY,
    PRINCIPAL_KEY,
    SESSION_KEY,
    SIGNER_KEY,
)
from posfleet.dashboard.csrf import require_session_csrf
from posfleet.dashboard.errors import (
    ForbiddenError,
    NotAuthenticatedError,
    RouteAccessUndeclaredError,
)
from posfleet.i18n import mark as _
from posfleet.store.accounts import Principal, Role, resolve_api_token
from posfleet.store.engine import write_transaction
from posfleet.store.sessions import LAST_SEEN_RESOLUTION, live_session, touch_session

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
H = TypeVar("H", bound=Handler)

API_PREFIX = "/api/"
FRAGMENT_PREFIX = "/fragments/"
SESSION_COOKIE = "pf_session"
LOGIN_PATH = "/login"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that change nothing, so a page request with them needs no CSRF token."""

_RULE_ATTRIBUTE = "__posfleet_access_rule__"


@dataclass(frozen=True, slots=True)
class AccessRule:
    """The least role a route needs; None for a public route."""

    role: Role | None


def requires(role: Role) -> Callable[[H], H]:
    """Decorate a handler so that only principals whose role permits ``role`` reach it."""

    def mark(handler: H) -> H:
        setattr(handler, _RULE_ATTRIBUTE, AccessRule(role))
        return handler

    return mark


def public(handler: H) -> H:
    """Decorate a handler that anyone may call, logged in or not."""
    setattr(handler, _RULE_ATTRIBUTE, AccessRule(None))
    return handler


def access_rule(handler: object) -> AccessRule | None:
    """The rule a handler was decorated with, if any."""
    rule = getattr(handler, _RULE_ATTRIBUTE, None)
    return rule if isinstance(rule, AccessRule) else None


def check_routes_declare_access(app: web.Application) -> None:
    """Raise :class:`RouteAccessUndeclaredError` for a route without a rule."""
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource):
            continue
        if access_rule(route.handler) is None:
            raise RouteAccessUndeclaredError(f"{route.method} {route.resource}")


def is_api(request: web.Request) -> bool:
    """True for requests to the JSON API."""
    return request.path.startswith(API_PREFIX)


def principal(request: web.Request) -> Principal:
    """The authenticated principal of a request to a protected route."""
    return request[PRINCIPAL_KEY]


LANDING_PATH = "/overview"
"""Where a login without a ``next`` lands: the overview."""


def login_url(next_path: str) -> str:
    """The login page, returning to ``next_path`` afterwards."""
    return f"{LOGIN_PATH}?{urlencode({'next': next_path})}"


async def _bearer_principal(request: web.Request) -> Principal:
    header = request.headers.get("Authorization", "")
    if not header:
        raise NotAuthenticatedError(_("send an API token: Authorization: Bearer <token>"))
    scheme, _space, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticatedError(_("the Authorization header must read: Bearer <token>"))
    async with request.app[ENGINE_KEY].begin() as conn:
        found = await resolve_api_token(conn, token.strip())
    if found is None:
        raise NotAuthenticatedError(_("the API token is unknown or revoked"))
    return found


async def session_principal(request: web.Request) -> Principal | None:
    """The user of the request's session cookie, if it is well signed, live and enabled.

    Also stores the session under :data:`SESSION_KEY` for CSRF checks.
    """
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    now = utcnow()
    session = request.app[SIGNER_KEY].verify(cookie, now)
    if session is None:
        return None
    engine = request.app[ENGINE_KEY]
    async with engine.connect() as conn:
        # Read session and user on every request, so a logout, a disable or a role
        # change takes effect at once on every instance, not when the cookie expires.
        found = await live_session(conn, session.session_id, now)
    if found is None or found.user_id != session.user_id:
        return None
    if now - found.last_seen_at >= LAST_SEEN_RESOLUTION:
        async with write_transaction(engine) as conn:
            await touch_session(conn, session.session_id, now)
    request[SESSION_KEY] = session
    return Principal("user", found.user_id, found.username, Role(found.role))


@web.middleware
async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Resolve the principal and check the route's role before the handler runs."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return await handler(request)
    if isinstance(match_info.route.resource, web.StaticResource):
        return await handler(request)
    rule = access_rule(match_info.handler)
    if rule is None:
        raise RouteAccessUndeclaredError(f"{request.method} {request.path}")
    if rule.role is None:
        return await handler(request)
    if is_api(request):
        who = await _bearer_principal(request)
    else:
        found = await session_principal(request)
        if found is None:
            if request.path.startswith(FRAGMENT_PREFIX) or request.method != "GET":
                raise NotAuthenticatedError(_("your session has ended; log in again"))
            raise web.HTTPSeeOther(login_url(request.path_qs))
        who = found
    if not who.role.permits(rule.role):
        raise ForbiddenError(
            _("this needs the {need} role; {actor} has {have}").format(
                need=rule.role, actor=who.actor, have=who.role
            )
        )
    if not is_api(request) and request.method not in SAFE_METHODS:
        await require_session_csrf(request)
    request[PRINCIPAL_KEY] = who
    return await handler(request)
