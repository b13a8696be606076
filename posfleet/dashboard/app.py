"""The dashboard's aiohttp application: routes, middlewares and shared objects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import (
    account_page,
    admin_api,
    admin_tokens_page,
    admin_users_page,
    audit_page,
    backups_api,
    backups_page,
    cases_api,
    cases_page,
    commands_api,
    commands_page,
    firmware_actions_api,
    firmware_artifacts_api,
    firmware_download,
    fleet_page,
    incidents_api,
    incidents_page,
    knowledge_api,
    knowledge_page,
    liveness,
    login,
    merchants_api,
    metrics_endpoint,
    openapi_page,
    overview_page,
    reports_api,
    reports_page,
    rollouts_api,
    rollouts_page,
    search_page,
    terminal_health_api,
    terminal_page,
    terminals_api,
)
from posfleet.dashboard.access import authenticate, check_routes_declare_access
from posfleet.dashboard.app_keys import (
    ENGINE_KEY,
    LOGIN_THROTTLE_KEY,
    REJECTIONS_KEY,
    SIGNER_KEY,
)
from posfleet.dashboard.error_rendering import render_errors
from posfleet.dashboard.firmware_download import FIRMWARE_KEY, FirmwareDelivery
from posfleet.dashboard.login_throttle import LoginThrottle
from posfleet.dashboard.page_layout import STATIC_PREFIX
from posfleet.dashboard.paging_cursor import CURSORS_KEY, PagingCursors
from posfleet.dashboard.rejections import Rejections
from posfleet.dashboard.security_headers import add_security_headers
from posfleet.dashboard.session_tokens import SessionSigner
from posfleet.dashboard.templating import (
    apply_account_locale,
    choose_locale,
    setup_templates,
)

STATIC_DIR = Path(__file__).resolve().with_name("static")
DEFAULT_SESSION_LIFETIME = timedelta(hours=8)
"""One working shift; after that staff log in again."""

MAX_REQUEST_BYTES = 64 * 1024
"""The dashboard takes forms and small JSON bodies only (firmware uploads have their own route)."""

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def create_app(
    engine: AsyncEngine,
    *,
    session_secret: bytes,
    session_lifetime: timedelta = DEFAULT_SESSION_LIFETIME,
    extra_cleanup_ctx: Iterable[CleanupContext] = (),
    firmware: FirmwareDelivery | None = None,
) -> web.Application:
    """The dashboard over ``engine`` (which the caller owns and disposes).

    ``session_secret`` signs session cookies and CSRF tokens (at least 32 bytes; keep it
    stable across restarts and shared between instances). ``extra_cleanup_ctx`` start with
    the app and stop with it, e.g. the ingest bridge. ``firmware`` serves artifact
    uploads and downloads; without it those routes answer 503.
    """
    app = web.Application(
        middlewares=[choose_locale, render_errors, authenticate, apply_account_locale],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[ENGINE_KEY] = engine
    app[SIGNER_KEY] = SessionSigner(session_secret, session_lifetime)
    app[LOGIN_THROTTLE_KEY] = LoginThrottle()
    app[CURSORS_KEY] = PagingCursors(session_secret)
    app[REJECTIONS_KEY] = Rejections()
    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.extend(extra_cleanup_ctx)
    if firmware is not None:
        app[FIRMWARE_KEY] = firmware

    fleet_page.add_routes(app)
    login.add_routes(app)
    terminals_api.add_routes(app)
    incidents_api.add_routes(app)
    incidents_page.add_routes(app)
    liveness.add_routes(app)
    metrics_endpoint.add_routes(app)
    terminal_page.add_routes(app)
    terminal_health_api.add_routes(app)
    firmware_download.add_routes(app)
    firmware_artifacts_api.add_routes(app)
    firmware_actions_api.add_routes(app)
    rollouts_api.add_routes(app)
    setup_templates(app)
    rollouts_page.add_routes(app)
    admin_api.add_routes(app)
    admin_users_page.add_routes(app)
    admin_tokens_page.add_routes(app)
    audit_page.add_routes(app)
    search_page.add_routes(app)
    merchants_api.add_routes(app)
    commands_api.add_routes(app)
    commands_page.add_routes(app)
    backups_api.add_routes(app)
    backups_page.add_routes(app)
    openapi_page.add_routes(app)
    cases_api.add_routes(app)
    cases_page.add_routes(app)
    overview_page.add_routes(app)
    reports_api.add_routes(app)
    reports_page.add_routes(app)
    knowledge_api.add_routes(app)
    knowledge_page.add_routes(app)
    account_page.add_routes(app)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR)
    check_routes_declare_access(app)
    return app
