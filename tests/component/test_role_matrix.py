"""Who may call what, checked for every route of the real app, read from its route table.

No route is listed here, so a route added tomorrow is checked tomorrow: every route but
the documented public ones refuses anonymous callers (401 on the API, the login page or
401 for pages); every route refuses roles below the one it declares (403); every page
request that may change something is refused without its session's CSRF token, or with
another session's (403); and a session cookie alone never opens the API (401), which is
why the API needs no CSRF token. One app, one SQLite file, in-process requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse, DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.access import API_PREFIX, SESSION_COOKIE, access_rule
from posfleet.dashboard.app_keys import SIGNER_KEY
from posfleet.store.accounts import Role, create_api_token
from posfleet.store.schema import users
from posfleet.store.sessions import start_session
from tests.harness.route_paths import concrete_path

SECRET = bytes(range(32, 64))

PUBLIC_ROUTES = {
    ("GET", "/login"),  # the login form
    ("POST", "/login"),  # the login itself, with its pre-session's CSRF token
    ("GET", "/healthz"),  # liveness for load balancers and systemd
    ("GET", "/metrics"),  # Prometheus scraping (network-restricted, see docs/admin.md)
    ("GET", "/firmware/download/{sha256}"),  # terminals, with their own download token
    ("GET", "/api/v1/openapi.json"),  # the API's description (no data), for clients
    ("GET", "/api/docs"),  # the same, rendered as the reference page
}
"""The documented exceptions (docs/admin.md): the routes anyone may call."""

VIEWER_CHANGES = {("POST", "/logout"), ("POST", "/account")}
"""The changes a viewer may make: ending their own session, their own language setting."""

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Values tried, in order, for a path parameter: the first its pattern accepts is used
(the access check runs before any handler, so the object need not exist)."""

Client = TestClient[web.Request, web.Application]


@dataclass(frozen=True, slots=True)
class Route:
    """One route of the app as the matrix exercises it."""

    method: str
    pattern: str
    """The route as registered, e.g. ``/incidents/{incident_id}/ack``."""
    path: str
    """A concrete path that the route matches."""
    role: Role | None

    @property
    def api(self) -> bool:
        return self.path.startswith(API_PREFIX)

    def __str__(self) -> str:
        return f"{self.method} {self.pattern}"


@dataclass(frozen=True, slots=True)
class Caller:
    """A session cookie and an API token of one role."""

    cookie: str
    session_id: str
    token: str


def _concrete_path(resource: web.AbstractResource) -> str:
    path = concrete_path(resource)
    if path is None:
        raise AssertionError(f"no test value matches the parameters of {resource.canonical}")
    return path


def _routes(app: web.Application) -> Iterator[Route]:
    for route in app.router.routes():
        if isinstance(route.resource, web.StaticResource) or route.method == "HEAD":
            continue  # HEAD shares its GET's handler and rule
        assert route.resource is not None
        rule = access_rule(route.handler)
        assert rule is not None, f"{route.method} {route.resource.canonical} declares no rule"
        yield Route(
            route.method, route.resource.canonical, _concrete_path(route.resource), rule.role
        )


async def _caller(app: web.Application, engine: AsyncEngine, role: Role) -> Caller:
    now = utcnow()
    async with engine.begin() as conn:
        # No password: these users never log in through the form, only hold a session.
        user_id = (
            await conn.execute(
                sa.insert(users)
                .values(
                    username=f"matrix-{role}",
                    password_hash="!",
                    role=role.value,
                    created_at=now,
                    disabled=False,
                )
                .returning(users.c.id)
            )
        ).scalar_one()
        session, cookie = app[SIGNER_KEY].issue(user_id, now)
        await start_session(conn, session.session_id, user_id, now, now + timedelta(hours=1))
        token = await create_api_token(conn, f"matrix-{role}", role)
    return Caller(cookie, session.session_id, token)


@dataclass(frozen=True, slots=True)
class Matrix:
    """The app under test, its routes and one caller per role."""

    client: Client
    routes: list[Route]
    callers: dict[Role, Caller]

    def csrf(self, role: Role) -> str:
        assert self.client.app is not None
        return self.client.app[SIGNER_KEY].csrf_token(f"session:{self.callers[role].session_id}")

    async def call(
        self,
        route: Route,
        role: Role | None,
        *,
        csrf: str | None = "valid",
        bearer: bool = True,
        cookie: bool = True,
    ) -> ClientResponse:
        """Send ``route`` as ``role`` (None: anonymous): API with its token, pages with
        its cookie and, for a mutating page request, a CSRF token of the kind named."""
        headers: dict[str, str] = {}
        data: Any = None
        if role is not None:
            caller = self.callers[role]
            if route.api and bearer:
                headers["Authorization"] = f"Bearer {caller.token}"
            if cookie and (not route.api or not bearer):
                headers["Cookie"] = f"{SESSION_COOKIE}={caller.cookie}"
        if route.method in MUTATING:
            if route.api:
                data = b"{}"
                headers["Content-Type"] = "application/json"
            else:
                tokens = {
                    "valid": self.csrf(role) if role is not None else "x",
                    "other": self.csrf(Role.ADMIN if role is not Role.ADMIN else Role.VIEWER),
                    "garbage": "not-a-token",
                }
                data = {} if csrf is None else {"csrf_token": tokens[csrf]}
        return await self.client.request(
            route.method, route.path, headers=headers, data=data, allow_redirects=False
        )


@pytest.fixture
async def matrix(sqlite_engine: AsyncEngine) -> AsyncIterator[Matrix]:
    app = create_app(sqlite_engine, session_secret=SECRET)
    routes = list(_routes(app))
    callers = {role: await _caller(app, sqlite_engine, role) for role in Role}
    # No cookie jar: each request carries exactly the credentials the check names.
    async with TestClient(TestServer(app), cookie_jar=DummyCookieJar()) as client:
        yield Matrix(client, routes, callers)


def _protected(matrix: Matrix) -> list[Route]:
    return [r for r in matrix.routes if (r.method, r.pattern) not in PUBLIC_ROUTES]


def _report(failures: list[str]) -> str:
    return f"{len(failures)} refusals missing:\n" + "\n".join(failures)


def test_only_the_documented_routes_are_public(sqlite_engine: AsyncEngine) -> None:
    app = create_app(sqlite_engine, session_secret=SECRET)
    public = {(r.method, r.pattern) for r in _routes(app) if r.role is None}
    assert public <= PUBLIC_ROUTES, f"undocumented public routes: {sorted(public - PUBLIC_ROUTES)}"
    open_changes = {
        (r.method, r.pattern)
        for r in _routes(app)
        if r.method in MUTATING and r.role is Role.VIEWER
    }
    assert open_changes <= VIEWER_CHANGES, (
        f"changes that must need at least the support role: {sorted(open_changes - VIEWER_CHANGES)}"
    )


async def test_anonymous_callers_are_refused_everywhere_but_the_public_routes(
    matrix: Matrix,
) -> None:
    failures = []
    for route in _protected(matrix):
        response = await matrix.call(route, None, csrf=None)
        location = response.headers.get("Location", "")
        if route.api:
            refused = response.status == 401
        else:
            refused = response.status == 401 or (
                response.status == 303 and location.startswith("/login")
            )
        if not refused:
            failures.append(f"{route}: {response.status} {location}")
    assert not failures, _report(failures)


async def test_roles_below_the_declared_one_are_refused(matrix: Matrix) -> None:
    failures = []
    for route in _protected(matrix):
        assert route.role is not None
        for role in (r for r in Role if r < route.role):
            response = await matrix.call(route, role)
            if response.status != 403:
                failures.append(f"{route} as {role}: {response.status}")
    assert not failures, _report(failures)


async def test_page_changes_are_refused_without_the_sessions_csrf_token(matrix: Matrix) -> None:
    failures = []
    for route in _protected(matrix):
        if route.api or route.method not in MUTATING:
            continue
        assert route.role is not None
        for kind in (None, "other", "garbage"):
            response = await matrix.call(route, route.role, csrf=kind)
            text = await response.text()
            if response.status != 403 or "did not come from this site" not in text:
                failures.append(f"{route} with CSRF {kind or 'missing'}: {response.status}")
    assert not failures, _report(failures)


async def test_a_session_cookie_alone_never_opens_the_api(matrix: Matrix) -> None:
    failures = []
    for route in _protected(matrix):
        if not route.api:
            continue
        response = await matrix.call(route, Role.ADMIN, bearer=False)
        if response.status != 401:
            failures.append(f"{route} with an admin's cookie: {response.status}")
    assert not failures, _report(failures)


async def test_the_login_form_needs_its_own_csrf_token(matrix: Matrix) -> None:
    response = await matrix.client.post(
        "/login", data={"username": "matrix-admin", "password": "x"}, allow_redirects=False
    )
    assert response.status == 403
