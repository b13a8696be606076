"""Starting and ending a browser session: the signed cookie and its database row together.

The cookie is what the browser holds; the row (:mod:`posfleet.store.sessions`) is what
every dashboard instance consults, so both are made and ended here in the caller's
transaction, beside the audit line that says who logged in or out.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.app_keys import SESSION_KEY, SIGNER_KEY
from posfleet.dashboard.security_headers import served_over_tls
from posfleet.store.sessions import SessionEnd, end_session, start_session


def set_browser_cookie(
    request: web.Request, response: web.StreamResponse, name: str, value: str, lifetime: timedelta
) -> None:
    """Set a session (or pre-login) cookie with the flags every such cookie carries.

    ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (no other site's page sends
    it), and ``Secure`` whenever the browser reached us over TLS, directly or through a
    declared TLS proxy (:func:`~posfleet.dashboard.security_headers.served_over_tls`), so
    it never travels over plain http afterwards.
    """
    response.set_cookie(
        name,
        value,
        max_age=int(lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="Strict",
        secure=served_over_tls(request),
    )


async def begin_session(
    request: web.Request, conn: AsyncConnection, user_id: int, now: datetime
) -> str:
    """Record a new session for ``user_id`` and return the cookie value that carries it.

    The id is always new, never one the browser brought: a planted cookie cannot become
    someone's authenticated session (session fixation).
    """
    session, cookie = request.app[SIGNER_KEY].issue(user_id, now)
    await start_session(
        conn,
        session.session_id,
        user_id,
        now,
        datetime.fromtimestamp(session.expires_at, UTC),
        user_agent=request.headers.get("User-Agent", ""),
        address=request.remote or "",
    )
    return cookie


async def finish_session(request: web.Request, conn: AsyncConnection, now: datetime) -> None:
    """End the request's own session for good, on every instance (a logout)."""
    await end_session(conn, request[SESSION_KEY].session_id, now, SessionEnd.LOGOUT)
