"""The dashboard's aiohttp application: routes, middlewares and shared objects."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from datetime import timedelta
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import (
    fleet_page,
    incidents_api,
    incidents_page,
    liveness,
    login,
    metrics_endpoint,
    terminals_api,
)
from posfleet.dashboard.access import authenticate, check_routes_declare_access
from posfleet.dashboard.app_keys import (
    ENDED_SESSIONS_KEY,
    ENGINE_KEY,
    LOGIN_THROTTLE_KEY,
    REJECTIONS_KEY,
    SIGNER_KEY,
)
from posfleet.dashboard.error_rendering import render_errors
from posfleet.dashboard.login_throttle import LoginThrottle
from posfleet.dashboard.page_layout import STATIC_PREFIX
from posfleet.dashboard.rejections import Rejections
from posfleet.dashboard.security_headers import add_security_headers
from posfleet.dashboard.session_tokens import EndedSessions, SessionSigner

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
) -> web.Application:
    """The dashboard over ``engine`` (which the caller owns and disposes).

    ``session_secret`` signs session cookies and CSRF tokens (at least 32 bytes; keep it
    stable across restarts and shared between instances). ``extra_cleanup_ctx`` start with
    the app and stop with it, e.g. the ingest bridge.
    """
    app = web.Application(
        middlewares=[render_errors, authenticate], client_max_size=MAX_REQUEST_BYTES
    )
    app[ENGINE_KEY] = engine
    app[SIGNER_KEY] = SessionSigner(session_secret, session_lifetime)
    app[ENDED_SESSIONS_KEY] = EndedSessions()
    app[LOGIN_THROTTLE_KEY] = LoginThrottle()
    app[REJECTIONS_KEY] = Rejections()
    app.on_response_prepare.append(add_security_headers)
    app.cleanup_ctx.extend(extra_cleanup_ctx)

    fleet_page.add_routes(app)
    login.add_routes(app)
    terminals_api.add_routes(app)
    incidents_api.add_routes(app)
    incidents_page.add_routes(app)
    liveness.add_routes(app)
    metrics_endpoint.add_routes(app)
    app.router.add_static(STATIC_PREFIX, STATIC_DIR)
    check_routes_declare_access(app)
    return app
