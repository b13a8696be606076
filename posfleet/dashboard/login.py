"""``/login`` and ``/logout``: password login into a signed session cookie.

Every attempt, good or bad, and every logout goes to the audit log.
"""

from __future__ import annotations

import math
from datetime import timedelta

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import utcnow
from posfleet.dashboard.access import (
    LOGIN_PATH,
    SESSION_COOKIE,
    public,
    requires,
    session_principal,
)
from posfleet.dashboard.app_keys import (
    ENDED_SESSIONS_KEY,
    ENGINE_KEY,
    LOGIN_THROTTLE_KEY,
    PRINCIPAL_KEY,
    REJECTIONS_KEY,
    SESSION_KEY,
    SIGNER_KEY,
)
from posfleet.dashboard.csrf import (
    CSRF_FIELD,
    csrf_token,
    login_binding,
    require_csrf,
    session_binding,
)
from posfleet.dashboard.markup import Markup, concat, element
from posfleet.dashboard.page_layout import page
from posfleet.dashboard.session_tokens import is_well_formed_id, new_id
from posfleet.store.accounts import Role, record_audit, verify_login
from posfleet.store.engine import write_transaction

PRESESSION_COOKIE = "pf_login"
PRESESSION_LIFETIME = timedelta(hours=1)
_AUDIT_TARGET_MAX = 128


def safe_next(value: object) -> str:
    """Where to go after login: a path on this site only, never another origin."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return "/"
    if "\\" in value or not value.isprintable() or value.startswith(LOGIN_PATH):
        return "/"
    return value


def _set_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, lifetime: timedelta
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=request.secure,
    )


def _text_field(form: MultiMapping[object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _login_page(token: str, next_path: str, username: str = "", error: str = "") -> Markup:
    form = element(
        "form",
        element("input", type="hidden", name=CSRF_FIELD, value=token),
        element("input", type="hidden", name="next", value=next_path),
        element(
            "label",
            "Username",
            element(
                "input",
                name="username",
                value=username,
                autocomplete="username",
                required=True,
                autofocus=not username,
            ),
        ),
        element(
            "label",
            "Password",
            element(
                "input",
                type="password",
                name="password",
                autocomplete="current-password",
                required=True,
                autofocus=bool(username),
            ),
        ),
        element("button", "Log in", type="submit"),
        method="post",
        action=LOGIN_PATH,
        class_="login",
    )
    notice = element("p", error, class_="error", role="alert") if error else None
    return page("Log in", concat([element("h1", "Log in"), notice, form]))


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def _html(body: Markup, status: int = 200) -> web.Response:
    return web.Response(status=status, text=body, content_type="text/html")


@public
async def login_form(request: web.Request) -> web.StreamResponse:
    """``GET /login``: the form, with a CSRF token bound to a pre-login session cookie."""
    next_path = safe_next(request.query.get("next"))
    if await session_principal(request) is not None:
        raise web.HTTPSeeOther(next_path)
    # Reuse the pre-session of another open login tab, so that tab's form stays valid.
    presession = request.cookies.get(PRESESSION_COOKIE, "")
    if not is_well_formed_id(presession):
        presession = new_id()
    response = _html(_login_page(csrf_token(request, login_binding(presession)), next_path))
    _set_cookie(request, response, PRESESSION_COOKIE, presession, PRESESSION_LIFETIME)
    return response


@public
async def login_submit(request: web.Request) -> web.StreamResponse:
    """``POST /login``: check the CSRF token and the password, then start a session."""
    form = await request.post()
    presession = request.cookies.get(PRESESSION_COOKIE, "")
    require_csrf(request, form, login_binding(presession) if is_well_formed_id(presession) else "")
    username = _text_field(form, "username")
    password = _text_field(form, "password")
    next_path = safe_next(form.get("next"))
    token = csrf_token(request, login_binding(presession))
    remote = {"remote": request.remote or ""}
    now = utcnow()

    throttle = request.app[LOGIN_THROTTLE_KEY]
    if (wait := throttle.retry_after(username, now)) is not None:
        request.app[REJECTIONS_KEY].count("login_throttled", username)
        minutes = math.ceil(wait.total_seconds() / 60)
        error = f"Too many failed logins for this user. Try again in {minutes} min."
        return _html(_login_page(token, next_path, username, error), status=429)

    async with write_transaction(request.app[ENGINE_KEY]) as conn:
        user = await verify_login(conn, username, password)
        if user is None:
            target = username[:_AUDIT_TARGET_MAX]
            await record_audit(conn, "anonymous", "login.failed", target, remote, "")
        else:
            await record_audit(conn, f"user:{user.username}", "login", user.username, remote, "")
    if user is None:
        throttle.failed(username, now)
        request.app[REJECTIONS_KEY].count("login_failed", username)
        error = "Wrong username or password, or the account is disabled."
        return _html(_login_page(token, next_path, username, error))

    throttle.succeeded(username)
    signer = request.app[SIGNER_KEY]
    # A new session id at login, never the pre-session's: a planted cookie cannot become
    # someone's authenticated session (session fixation).
    _session, cookie = signer.issue(user.id, now)
    response = _see_other(next_path)
    _set_cookie(request, response, SESSION_COOKIE, cookie, signer.ttl)
    response.del_cookie(PRESESSION_COOKIE, path="/")
    return response


@requires(Role.VIEWER)
async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: end the session for good, even though its cookie is still signed."""
    form = await request.post()
    require_csrf(request, form, session_binding(request))
    request.app[ENDED_SESSIONS_KEY].end(request[SESSION_KEY], utcnow())
    who = request[PRINCIPAL_KEY]
    async with write_transaction(request.app[ENGINE_KEY]) as conn:
        await record_audit(conn, who.actor, "logout", who.name, {"remote": request.remote or ""})
    response = _see_other(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    """Register login and logout."""
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login_submit)
    app.router.add_post("/logout", logout)
