"""``/account``: the logged-in user's own settings; for now the language of their pages.

Every user, whatever their role, picks English, Simplified Chinese, or "follow the
browser" (no setting: the browser's ``Accept-Language`` decides). The header's language
switch posts to the same route with a ``next`` page to return to. Each change is in the
audit log.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.templating import _, render_page
from posfleet.i18n import LOCALE_NAMES, SUPPORTED_LOCALES
from posfleet.i18n.account_setting import set_user_locale, user_locale
from posfleet.store.accounts import Role, record_audit
from posfleet.store.engine import write_transaction

ACCOUNT_PATH = "/account"
FOLLOW_BROWSER = ""
"""The form value for "no setting": follow the browser."""


def _choices(setting: str | None) -> list[tuple[str, str, bool]]:
    """The language select's options: ``(value, label, selected)``."""
    options = [(FOLLOW_BROWSER, _("Follow the browser"), setting is None)]
    options += [(name, label, setting == name) for name, label in LOCALE_NAMES.items()]
    return options


def _safe_next(value: str) -> str:
    """Where to return after the switch: a path on this site only, else the account page."""
    if value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return ACCOUNT_PATH


def _form_locale(value: str) -> str | None:
    if value == FOLLOW_BROWSER:
        return None
    if value not in SUPPORTED_LOCALES:
        raise InvalidParameterError("locale", _("choose one of the offered languages"))
    return value


async def _account_page(
    request: web.Request, *, notice: str | None = None, status: int = 200
) -> web.Response:
    who = principal(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        setting = await user_locale(conn, who.id)
    context: dict[str, Any] = {
        "choices": _choices(setting),
        "notice": notice,
        "account_path": ACCOUNT_PATH,
    }
    return render_page(request, "account.html", context, status=status)


@requires(Role.VIEWER)
async def account_page(request: web.Request) -> web.Response:
    """``GET /account``: the user's language setting."""
    notice = _("Your language setting was saved.") if request.query.get("saved") else None
    return await _account_page(request, notice=notice)


@requires(Role.VIEWER)
async def save_account_form(request: web.Request) -> web.StreamResponse:
    """``POST /account``: set the language (``locale``; empty follows the browser), then go
    to ``next`` (the header's switch) or back to the account page."""
    form = await request.post()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    who = principal(request)
    chosen = _form_locale(fields.get("locale", FOLLOW_BROWSER))
    async with write_transaction(request.app[ENGINE_KEY]) as conn:
        before = await user_locale(conn, who.id)
        await set_user_locale(conn, who.id, chosen)
        if before != chosen:
            detail = {"from": before or "browser", "to": chosen or "browser"}
            await record_audit(conn, who.actor, "user.locale", who.name, detail)
    next_path = fields.get("next", "")
    raise web.HTTPSeeOther(_safe_next(next_path) if next_path else f"{ACCOUNT_PATH}?saved=1")


def add_routes(app: web.Application) -> None:
    """Register the account page."""
    app.router.add_get(ACCOUNT_PATH, account_page)
    app.router.add_post(ACCOUNT_PATH, save_account_form)
