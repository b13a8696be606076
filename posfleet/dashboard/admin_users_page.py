"""``/admin/users``: staff users for admins: create, change role, disable or enable, reset a
password, log someone out everywhere. Each change asks for a reason (the audit log keeps
it with who made it). Thin over :class:`~posfleet.dashboard.staff_admin.StaffAdmin`, the
same operations as ``/api/v1/users``; forms post and redirect back (post/redirect/get),
a refused change shows the form again with the reason it was refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError, RequestRejectedError
from posfleet.dashboard.query_params import MAX_ROW_ID, choice_param
from posfleet.dashboard.staff_admin import StaffAdmin
from posfleet.dashboard.templating import _, render_page
from posfleet.i18n import LOCALE_NAMES
from posfleet.i18n.account_setting import user_locale
from posfleet.store.accounts import Role
from posfleet.store.sessions import list_user_sessions, live_session_counts
from posfleet.store.staff_accounts import find_user, list_users

USERS_PATH = "/admin/users"
DONE_NOTICES = {
    "role": _("The role was changed; it applies from the user's next click."),
    "disabled": _("The user is disabled and logged out everywhere."),
    "enabled": _("The user is enabled again and can log in."),
    "password": _("The password was reset; the user was logged out everywhere."),
    "sessions": _("The user was logged out everywhere."),
}


def user_path(user_id: int) -> str:
    """The page of one user."""
    return f"{USERS_PATH}/{user_id}"


def path_id(request: web.Request, name: str) -> int:
    """A numeric ``{name}`` of the path; 404 for anything else (no such page)."""
    raw = request.match_info[name]
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_ROW_ID:
        raise NotFoundError(_("there is no such page"))
    return int(raw)


async def form_fields(request: web.Request) -> dict[str, str]:
    """The posted form's text fields."""
    form = await request.post()
    return {k: v for k, v in form.items() if isinstance(v, str)}


def form_role(fields: Mapping[str, str]) -> Role:
    """The ``role`` field as a role; a 400 for anything else."""
    try:
        return Role(fields.get("role", ""))
    except ValueError:
        raise InvalidParameterError("role", _("choose one of the roles")) from None


def _admin(request: web.Request) -> StaffAdmin:
    return StaffAdmin(request.app[ENGINE_KEY], principal(request))


async def _users_page(
    request: web.Request,
    *,
    values: Mapping[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[ENGINE_KEY].connect() as conn:
        found = await list_users(conn)
        counts = await live_session_counts(conn, utcnow())
    context: dict[str, Any] = {
        "users": [(u, counts.get(u.id, 0)) for u in found],
        "roles": list(Role),
        "values": dict(values or {"role": Role.SUPPORT.value}),
        "problem": problem,
        "users_path": USERS_PATH,
        "user_path": user_path,
        "admin_tab": "users",
    }
    return render_page(request, "admin_users.html", context, status=status)


@requires(Role.ADMIN)
async def users_page(request: web.Request) -> web.Response:
    """``GET /admin/users``: every user, their role, state and open sessions; the create form."""
    return await _users_page(request)


@requires(Role.ADMIN)
async def create_user_form(request: web.Request) -> web.StreamResponse:
    """``POST /admin/users``: create, then show the new user's page."""
    fields = await form_fields(request)
    shown = {k: v for k, v in fields.items() if k != "password"}
    try:
        user = await _admin(request).create_user(
            fields.get("username", "").strip(),
            form_role(fields),
            fields.get("password", ""),
            fields.get("reason", ""),
        )
    except RequestRejectedError as exc:
        return await _users_page(request, values=shown, problem=exc.message, status=exc.status)
    raise web.HTTPSeeOther(user_path(user.id))


async def _user_page(
    request: web.Request, user_id: int, *, problem: str | None = None, status: int = 200
) -> web.Response:
    async with request.app[ENGINE_KEY].connect() as conn:
        user = await find_user(conn, user_id)
        sessions = await list_user_sessions(conn, user_id)
        language = await user_locale(conn, user_id)
    if user is None:
        raise NotFoundError(_("there is no such user"))
    now = utcnow()
    done = choice_param(request.query, "done", DONE_NOTICES) if not problem else None
    context: dict[str, Any] = {
        "shown": user,
        "is_me": user.id == principal(request).id and principal(request).kind == "user",
        "sessions": sessions,
        "language": LOCALE_NAMES.get(language or ""),
        "live": [s for s in sessions if s.live(now)],
        "roles": list(Role),
        "problem": problem,
        "notice": DONE_NOTICES.get(done or ""),
        "users_path": USERS_PATH,
        "path": user_path(user.id),
        "admin_tab": "users",
    }
    return render_page(request, "admin_user.html", context, status=status)


@requires(Role.ADMIN)
async def user_page(request: web.Request) -> web.Response:
    """``GET /admin/users/{user_id}``: one user, their sessions, and the forms to change them."""
    return await _user_page(request, path_id(request, "user_id"))


@requires(Role.ADMIN)
async def change_user_form(request: web.Request) -> web.StreamResponse:
    """``POST /admin/users/{user_id}/{change}``: role, disabled, enabled, password, sessions."""
    user_id = path_id(request, "user_id")
    change = request.match_info["change"]
    fields = await form_fields(request)
    admin, reason = _admin(request), fields.get("reason", "")
    try:
        if change == "role":
            await admin.change_role(user_id, form_role(fields), reason)
        elif change in ("disabled", "enabled"):
            await admin.set_disabled(user_id, change == "disabled", reason)
        elif change == "password":
            await admin.reset_password(user_id, fields.get("password", ""), reason)
        elif change == "sessions":
            await admin.end_sessions(user_id, reason)
        else:
            raise NotFoundError(_("there is no such page"))
    except NotFoundError:
        raise
    except RequestRejectedError as exc:
        return await _user_page(request, user_id, problem=exc.message, status=exc.status)
    raise web.HTTPSeeOther(f"{user_path(user_id)}?done={change}")


def add_routes(app: web.Application) -> None:
    """Register the users pages."""
    app.router.add_get(USERS_PATH, users_page)
    app.router.add_post(USERS_PATH, create_user_form)
    app.router.add_get(f"{USERS_PATH}/{{user_id}}", user_page)
    app.router.add_post(f"{USERS_PATH}/{{user_id}}/{{change}}", change_user_form)
