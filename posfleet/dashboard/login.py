"""``/login`` and ``/logout``: password login into a session (a signed cookie and its
database row, see :mod:`posfleet.dashboard.browser_sessions`).

Every attempt, good or bad, and every logout goes to the audit log. Failed attempts are
counted per account and per client address (:mod:`posfleet.dashboard.login_throttle`):
past a few, the next attempt is answered 429 with ``Retry-After`` and not checked.
"""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import utcnow
from posfleet.dashboard.access import (
    LANDING_PATH,
    LOGIN_PATH,
    SESSION_COOKIE,
    public,
    requires,
    session_principal,
)
from posfleet.dashboard.app_keys import (
    ENGINE_KEY,
    LOGIN_THROTTLE_KEY,
    PRINCIPAL_KEY,
    REJECTIONS_KEY,
    SIGNER_KEY,
)
from posfleet.dashboard.browser_sessions import begin_session, finish_session
from posfleet.dashboard.browser_sessions import set_browser_cookie as _set_cookie
from posfleet.dashboard.csrf import (
    csrf_token,
    login_binding,
    require_csrf,
)
from posfleet.dashboard.login_throttle import Throttled
from posfleet.dashboard.session_tokens import is_well_formed_id, new_id
from posfleet.dashboard.templating import _, render_public_page
from posfleet.store.accounts import Role, record_audit, verify_login
from posfleet.store.engine import write_transaction
from posfleet.store.login_attempts import AttemptKind

PRESESSION_COOKIE = "pf_login"
PRESESSION_LIFETIME = timedelta(hours=1)
_AUDIT_TARGET_MAX = 128


def safe_next(value: object) -> str:
    """Where to go after login: a path on this site only, never another origin."""
    if not isinstance(value, str) or not value.startswith("/") or value.startswith("//"):
        return LANDING_PATH
    if "\\" in value or not value.isprintable() or value.startswith(LOGIN_PATH):
        return LANDING_PATH
    return value


def _text_field(form: MultiMapping[object], name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _login_page(
    request: web.Request,
    token: str,
    next_path: str,
    username: str = "",
    error: str = "",
    *,
    status: int = 200,
) -> web.Response:
    context = {
        "csrf_token": token,
        "login_path": LOGIN_PATH,
        "next_path": next_path,
        "username": username,
        "error": error,
    }
    return render_public_page(request, "login.html", context, status=status)


def _throttled_page(
    request: web.Request, token: str, next_path: str, username: str, held: Throttled
) -> web.Response:
    """429: the attempt was not checked; ``Retry-After`` says when the next one will be."""
    seconds = held.retry_after_s
    if held.kind is AttemptKind.ADDRESS:
        error = _("Too many failed logins from this address. Try again in %(seconds)s s.")
    else:
        error = _("Too many failed logins for this user. Try again in %(seconds)s s.")
    response = _login_page(
        request, token, next_path, username, error % {"seconds": seconds}, status=429
    )
    response.headers["Retry-After"] = str(seconds)
    return response


def _see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


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
    response = _login_page(request, csrf_token(request, login_binding(presession)), next_path)
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
    throttle = request.app[LOGIN_THROTTLE_KEY]
    address = throttle.client_address(request)
    remote = {"remote": request.remote or "", "client": address}
    now = utcnow()
    checked_at = throttle.clock()

    async with request.app[ENGINE_KEY].connect() as conn:
        held = await throttle.check(conn, username, address, checked_at)
    if held is not None:
        request.app[REJECTIONS_KEY].count("login_throttled", username)
        return _throttled_page(request, token, next_path, username, held)

    async with write_transaction(request.app[ENGINE_KEY]) as conn:
        user = await verify_login(conn, username, password)
        if user is None:
            target = username[:_AUDIT_TARGET_MAX]
            await record_audit(conn, "anonymous", "login.failed", target, remote, "")
            await throttle.failed(conn, username, address, checked_at)
        else:
            cookie = await begin_session(request, conn, user.id, now)
            await record_audit(conn, f"user:{user.username}", "login", user.username, remote, "")
            await throttle.succeeded(conn, username)
    if user is None:
        request.app[REJECTIONS_KEY].count("login_failed", username)
        error = _("Wrong username or password, or the account is disabled.")
        return _login_page(request, token, next_path, username, error)

    response = _see_other(next_path)
    _set_cookie(request, response, SESSION_COOKIE, cookie, request.app[SIGNER_KEY].ttl)
    response.del_cookie(PRESESSION_COOKIE, path="/")
    return response


@requires(Role.VIEWER)
async def logout(request: web.Request) -> web.StreamResponse:
    """``POST /logout``: end the session for good, on every instance, though its cookie is
    still signed (the CSRF token was checked by the access middleware)."""
    who = request[PRINCIPAL_KEY]
    async with write_transaction(request.app[ENGINE_KEY]) as conn:
        await finish_session(request, conn, utcnow())
        await record_audit(conn, who.actor, "logout", who.name, {"remote": request.remote or ""})
    response = _see_other(LOGIN_PATH)
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    """Register login and logout."""
    app.router.add_get(LOGIN_PATH, login_form)
    app.router.add_post(LOGIN_PATH, login_submit)
    app.router.add_post("/logout", logout)
