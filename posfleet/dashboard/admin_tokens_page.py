"""``/admin/tokens``: API tokens for admins: create one (the token is shown this once and
stored only as a hash), revoke one. Same operations as ``/api/v1/tokens``, audited with
who and why."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.admin_users_page import form_fields, form_role, path_id
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import NotFoundError, RequestRejectedError
from posfleet.dashboard.staff_admin import StaffAdmin
from posfleet.dashboard.templating import render_page
from posfleet.store.accounts import Role
from posfleet.store.staff_accounts import ApiToken, list_api_tokens

TOKENS_PATH = "/admin/tokens"


async def _tokens_page(
    request: web.Request,
    *,
    created: tuple[ApiToken, str] | None = None,
    values: Mapping[str, str] | None = None,
    problem: str | None = None,
    status: int = 200,
) -> web.Response:
    async with request.app[ENGINE_KEY].connect() as conn:
        tokens = await list_api_tokens(conn)
    context: dict[str, Any] = {
        "tokens": tokens,
        "created": created,
        "roles": list(Role),
        "values": dict(values or {"role": Role.VIEWER.value}),
        "problem": problem,
        "tokens_path": TOKENS_PATH,
        "admin_tab": "tokens",
    }
    response = render_page(request, "admin_tokens.html", context, status=status)
    if created is not None:
        # The one page that shows a token: never kept by a cache or the back button.
        response.headers["Cache-Control"] = "no-store"
    return response


@requires(Role.ADMIN)
async def tokens_page(request: web.Request) -> web.Response:
    """``GET /admin/tokens``: every token (never the token itself) and the create form."""
    return await _tokens_page(request)


@requires(Role.ADMIN)
async def create_token_form(request: web.Request) -> web.Response:
    """``POST /admin/tokens``: create and show the token once (answered, not redirected,
    so the token is never in a URL or a page that can be reloaded)."""
    fields = await form_fields(request)
    admin = StaffAdmin(request.app[ENGINE_KEY], principal(request))
    try:
        created = await admin.create_token(
            fields.get("name", ""), form_role(fields), fields.get("reason", "")
        )
    except RequestRejectedError as exc:
        return await _tokens_page(request, values=fields, problem=exc.message, status=exc.status)
    return await _tokens_page(request, created=created, status=201)


@requires(Role.ADMIN)
async def revoke_token_form(request: web.Request) -> web.StreamResponse:
    """``POST /admin/tokens/{token_id}/revoke``: refused by the API from now on."""
    token_id = path_id(request, "token_id")
    fields = await form_fields(request)
    admin = StaffAdmin(request.app[ENGINE_KEY], principal(request))
    try:
        await admin.revoke_token(token_id, fields.get("reason", ""))
    except NotFoundError:
        raise
    except RequestRejectedError as exc:
        return await _tokens_page(request, problem=exc.message, status=exc.status)
    raise web.HTTPSeeOther(TOKENS_PATH)


def add_routes(app: web.Application) -> None:
    """Register the tokens pages."""
    app.router.add_get(TOKENS_PATH, tokens_page)
    app.router.add_post(TOKENS_PATH, create_token_form)
    app.router.add_post(f"{TOKENS_PATH}/{{token_id}}/revoke", revoke_token_form)
