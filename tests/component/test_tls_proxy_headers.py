"""HSTS and Secure cookies behind a declared TLS proxy, and neither on plain http."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.security_headers import BEHIND_TLS_PROXY_KEY


async def test_hsts_and_secure_cookies_only_when_the_browser_came_over_tls(
    sqlite_engine: AsyncEngine,
) -> None:
    for behind_proxy in (False, True):
        app = create_app(sqlite_engine, session_secret=bytes(range(32)))
        app[BEHIND_TLS_PROXY_KEY] = behind_proxy
        async with TestClient(TestServer(app)) as client:
            # What a client claims about the scheme does not count: only the setting.
            response = await client.get("/login", headers={"X-Forwarded-Proto": "https"})
            assert response.status == 200
            assert ("Strict-Transport-Security" in response.headers) is behind_proxy
            cookie = response.headers["Set-Cookie"]
            assert cookie.startswith("pf_login=")
            assert ("Secure" in cookie) is behind_proxy
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            health = await client.get("/healthz")
            assert ("Strict-Transport-Security" in health.headers) is behind_proxy
