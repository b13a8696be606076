"""Every HTML page is a Jinja2 template (through aiohttp-jinja2) in one shared frame.

Templates live in ``posfleet/dashboard/templates/``; ``base.html`` draws the header,
navigation, search box, language switch, user bar and stylesheet from the constants in
:mod:`posfleet.dashboard.page_layout`. Autoescaping is always on: a value reaches the
page as text unless a template marks it otherwise, and none does.

Languages (see ``docs/translations.md``). Every visible string is marked for translation
(``{{ _("...") }}``, ``ngettext`` or ``{% trans %}``) through ``jinja2.ext.i18n`` with
new-style gettext; the callables installed look the text up in the language of the request
being answered (:mod:`posfleet.i18n`), which two middlewares choose: :func:`choose_locale`,
outermost, from the browser's ``Accept-Language`` (so refusals and problem+json texts are
translated too), then :func:`apply_account_locale`, after authentication, from the
account's own setting. The ``utc``, ``date``, ``age``, ``percent``, ``number`` and
``duration`` filters write in that language too.

Python-side strings are marked with :func:`_`. Called while a request is answered it
translates at once; called at import time (module constants such as a state's label) it
returns a :class:`~posfleet.i18n.LazyText`, which is the English text as a ``str`` but
translates itself when a template shows it or Python formats it. A template that applies
a filter to such a label translates it first: ``{{ _(label) | upper }}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import aiohttp_jinja2
import jinja2
from aiohttp import web
from babel import Locale

from posfleet.contract import utcnow
from posfleet.dashboard.access import Handler, is_api, principal
from posfleet.dashboard.app_keys import ENGINE_KEY, PRINCIPAL_KEY
from posfleet.dashboard.csrf import CSRF_FIELD, csrf_token, session_binding
from posfleet.dashboard.page_layout import (
    ADMIN_SECTION,
    LIVE_REFRESH_SECONDS,
    SEARCH_PATH,
    SECTIONS,
    STATIC_PREFIX,
)
from posfleet.i18n import (
    LOCALE_NAMES,
    current_locale,
    format_age,
    format_date,
    format_duration,
    format_number,
    format_share,
    format_timestamp,
    gettext,
    html_lang,
    locale_name,
    mark,
    negotiate,
    ngettext,
    npgettext,
    pgettext,
    set_locale,
    use_locale,
)
from posfleet.i18n.account_setting import user_locale
from posfleet.store.accounts import Role

TEMPLATES_DIR = Path(__file__).resolve().with_name("templates")

LOCALE_KEY = web.RequestKey("locale", Locale)
"""The language a request is answered in (set by :func:`choose_locale`)."""


def _(message: str) -> str:
    """Mark ``message`` (a Python-side text shown on a page) for translation.

    In a request: the text in the request's language. At import time: a lazy text that
    translates itself when shown. Extraction finds the calls by this name.
    """
    return mark(message)


def request_locale(request: web.Request) -> Locale:
    """The language ``request`` is answered in: as chosen by the middlewares, else the browser's."""
    chosen = request.get(LOCALE_KEY)
    if isinstance(chosen, Locale):
        return chosen
    return negotiate(None, request.headers.get("Accept-Language"))


@web.middleware
async def choose_locale(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer in the browser's language (``Accept-Language``) unless the account says otherwise.

    Outermost middleware, so that every refusal rendered further in is translated too.
    """
    locale = negotiate(None, request.headers.get("Accept-Language"))
    request[LOCALE_KEY] = locale
    with use_locale(locale):
        response = await handler(request)
    response.headers.setdefault("Content-Language", html_lang(request[LOCALE_KEY]))
    return response


@web.middleware
async def apply_account_locale(request: web.Request, handler: Handler) -> web.StreamResponse:
    """After authentication: a logged-in user's own language setting wins over the browser's.

    The API (tokens, no accounts) keeps following ``Accept-Language``.
    """
    who = request.get(PRINCIPAL_KEY)
    if who is not None and who.kind == "user" and not is_api(request):
        async with request.app[ENGINE_KEY].connect() as conn:
            setting = await user_locale(conn, who.id)
        if setting is not None:
            locale = negotiate(setting, None)
            request[LOCALE_KEY] = locale
            # Not reset on the way out on purpose: the error rendering around this
            # middleware still answers in the user's language; choose_locale resets it.
            set_locale(locale)
    return await handler(request)


def relative_age(then: datetime, now: datetime) -> str:
    """``then`` as a short age in the current language: ``5 min ago``, ``5分钟前``."""
    return format_age(then, now)


def _iso(value: datetime | None) -> str:
    """For ``<time datetime=...>``."""
    return value.isoformat() if value is not None else ""


def _age(value: datetime | None) -> str:
    return relative_age(value, utcnow()) if value is not None else "-"


def duration(value: timedelta | None) -> str:
    """``30 min``, ``3 h``, ``1 d 12 h`` (``1天12小时`` in Chinese); ``0`` for no time at all."""
    return format_duration(value)


def _page_lang() -> str:
    return html_lang(current_locale())


def _other_languages() -> list[tuple[str, str]]:
    """The languages to switch to from the current one: ``(setting, name in itself)``."""
    here = locale_name(current_locale())
    return [(name, label) for name, label in LOCALE_NAMES.items() if name != here]


def _options() -> dict[str, Any]:
    return {
        "loader": jinja2.FileSystemLoader(TEMPLATES_DIR),
        "autoescape": True,
        "undefined": jinja2.StrictUndefined,
        "extensions": ["jinja2.ext.i18n"],
        "trim_blocks": True,
        "lstrip_blocks": True,
    }


def _configure(env: jinja2.Environment) -> jinja2.Environment:
    # install_gettext_callables is added to the environment by the i18n extension.
    cast(Any, env).install_gettext_callables(
        gettext, ngettext, newstyle=True, pgettext=pgettext, npgettext=npgettext
    )
    env.globals.update(
        static_prefix=STATIC_PREFIX,
        sections=SECTIONS,
        admin_section=ADMIN_SECTION,
        admin_role=Role.ADMIN,
        search_path=SEARCH_PATH,
        csrf_field=CSRF_FIELD,
        live_refresh_seconds=LIVE_REFRESH_SECONDS,
        page_lang=_page_lang,
        other_languages=_other_languages,
    )
    env.filters.update(
        utc=format_timestamp,
        date=format_date,
        iso=_iso,
        age=_age,
        percent=format_share,
        number=format_number,
        duration=duration,
        translated=translated,
    )
    return env


def translated(value: object) -> str:
    """A stored English text (a rule's title, cause or remedy step, a state word) in the
    reader's language, looked up in the catalogues as it is: no ``%`` formatting, so a
    text such as "below 60% of" is safe. Texts no catalogue has are shown as stored."""
    return gettext(str(value))


def make_environment() -> jinja2.Environment:
    """The dashboard's Jinja2 environment on its own (for tests and extraction tools)."""
    return _configure(jinja2.Environment(**_options()))


def setup_templates(app: web.Application) -> jinja2.Environment:
    """Install the environment on ``app`` (under aiohttp-jinja2's app key)."""
    return _configure(aiohttp_jinja2.setup(app, default_helpers=False, **_options()))


def render_page(
    request: web.Request,
    template: str,
    context: Mapping[str, Any],
    *,
    status: int = 200,
    scripts: Sequence[str] = (),
) -> web.Response:
    """``template`` with the frame's context: the user, the session's CSRF token, scripts.

    For pages behind a login (the user bar needs the principal and a session).
    """
    frame = {
        "user": principal(request),
        "csrf_token": csrf_token(request, session_binding(request)),
        "scripts": list(scripts),
        "here": request.path_qs,
    }
    return aiohttp_jinja2.render_template(template, request, {**frame, **context}, status=status)


def render_public_page(
    request: web.Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> web.Response:
    """``template`` in the frame without a user: the login page, error pages.

    ``context`` brings its own ``csrf_token`` where the page has a form.
    """
    frame: dict[str, Any] = {"user": None, "csrf_token": "", "scripts": []}
    return aiohttp_jinja2.render_template(template, request, {**frame, **context}, status=status)


def render_fragment(
    request: web.Request, template: str, context: Mapping[str, Any]
) -> web.Response:
    """A template that is a piece of a page (the live section), with the CSRF token."""
    frame = {
        "user": principal(request),
        "csrf_token": csrf_token(request, session_binding(request)),
    }
    return aiohttp_jinja2.render_template(template, request, {**frame, **context})
