"""Administration as an admin does it: users and tokens through the pages and the API, each
change in the audit log with who and why, and the log read back filtered and paged."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.store.accounts import Role, create_api_token, create_user

SECRET = bytes(range(64, 96))
PASSWORD = "card-reader-offline-9"
NEW_PASSWORD = "terminal-swap-on-site-2"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(sqlite_engine: AsyncEngine) -> AsyncIterator[Client]:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "root", PASSWORD, Role.ADMIN)
    app = create_app(sqlite_engine, session_secret=SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def admin_token(sqlite_engine: AsyncEngine) -> dict[str, str]:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "admin-bot", Role.ADMIN)
    return {"Authorization": f"Bearer {token}"}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def _log_in(client: Client, username: str, password: str) -> str:
    """Log in through the form; the CSRF token of the new session's pages."""
    form = await client.get("/login")
    data = {"csrf_token": _csrf(await form.text()), "username": username, "password": password}
    assert (await client.post("/login", data=data, allow_redirects=False)).status == 303
    return _csrf(await (await client.get("/admin/users")).text())


async def test_an_admin_adds_a_user_changes_the_role_and_the_audit_log_says_who_and_why(
    client: Client,
) -> None:
    csrf = await _log_in(client, "root", PASSWORD)
    form = {"csrf_token": csrf, "username": "bob", "role": "viewer", "password": NEW_PASSWORD}
    created = await client.post("/admin/users", data=form, allow_redirects=False)
    assert created.status == 303
    bob_page = created.headers["Location"]

    change = {"csrf_token": csrf, "role": "support", "reason": "joins the helpdesk"}
    changed = await client.post(f"{bob_page}/role", data=change)
    html = await changed.text()
    assert "The role was changed" in html
    assert 'bob <span class="quiet">(support)</span>' in html

    weak = {**form, "username": "carol", "password": "short"}
    refused = await client.post("/admin/users", data=weak)
    assert refused.status == 400
    assert "at least 12 are needed" in await refused.text()

    audit = await (await client.get("/admin/audit", params={"target": "bob"})).text()
    assert "user.role" in audit
    assert "joins the helpdesk" in audit
    assert "user:root" in audit
    assert "from=viewer" in audit


async def test_a_password_reset_logs_the_user_out_and_the_last_admin_cannot_be_disabled(
    client: Client, sqlite_engine: AsyncEngine
) -> None:
    async with sqlite_engine.begin() as conn:
        dave = await create_user(conn, "dave", PASSWORD, Role.SUPPORT)
    async with TestClient(TestServer(create_app(sqlite_engine, session_secret=SECRET))) as other:
        form = await other.get("/login")
        data = {"csrf_token": _csrf(await form.text()), "username": "dave", "password": PASSWORD}
        await other.post("/login", data=data)
        assert (await other.get("/", allow_redirects=False)).status == 200

        csrf = await _log_in(client, "root", PASSWORD)
        reset = {"csrf_token": csrf, "password": NEW_PASSWORD, "reason": "forgot it"}
        await client.post(f"/admin/users/{dave.id}/password", data=reset)

        assert (await other.get("/", allow_redirects=False)).status == 303

    root_page = await (await client.get("/admin/users")).text()
    root_id = re.search(r'href="/admin/users/(\d+)">root<', root_page)
    assert root_id
    disable = {"csrf_token": csrf, "reason": "leaving"}
    refused = await client.post(f"/admin/users/{root_id.group(1)}/disabled", data=disable)
    assert refused.status == 409
    assert "last enabled admin" in await refused.text()


async def test_a_token_is_shown_once_works_and_stops_when_revoked(client: Client) -> None:
    csrf = await _log_in(client, "root", PASSWORD)
    form = {"csrf_token": csrf, "name": "ticket-system", "role": "viewer"}
    created = await client.post("/admin/tokens", data=form)
    assert created.status == 201
    assert created.headers["Cache-Control"] == "no-store"
    html = await created.text()
    token = re.search(r"<code class=\"token\" data-token>(pf_[^<]+)</code>", html)
    assert token
    bearer = {"Authorization": f"Bearer {token.group(1)}"}
    assert (await client.get("/api/v1/terminals", headers=bearer)).status == 200
    assert token.group(1) not in await (await client.get("/admin/tokens")).text()

    token_id = re.search(r'action="/admin/tokens/(\d+)/revoke"', html)
    assert token_id
    revoke = {"csrf_token": csrf, "reason": "system retired"}
    await client.post(f"/admin/tokens/{token_id.group(1)}/revoke", data=revoke)
    assert (await client.get("/api/v1/terminals", headers=bearer)).status == 401


async def test_the_api_manages_users_and_tokens_and_pages_the_audit_log(
    client: Client, admin_token: dict[str, str]
) -> None:
    body = {"username": "erin", "role": "ops", "password": NEW_PASSWORD, "reason": "new hire"}
    created = await client.post("/api/v1/users", json=body, headers=admin_token)
    assert created.status == 201
    erin = await created.json()
    assert (erin["username"], erin["role"], erin["disabled"]) == ("erin", "ops", False)
    taken = await client.post("/api/v1/users", json=body, headers=admin_token)
    assert taken.status == 409

    patch = {"disabled": True, "reason": "left the company"}
    changed = await client.patch(f"/api/v1/users/{erin['id']}", json=patch, headers=admin_token)
    assert (await changed.json())["disabled"] is True
    no_reason = await client.patch(
        f"/api/v1/users/{erin['id']}", json={"role": "viewer"}, headers=admin_token
    )
    assert no_reason.status == 400
    assert (await no_reason.json())["invalid_params"][0]["name"] == "reason"

    made = await client.post(
        "/api/v1/tokens", json={"name": "erp", "role": "support"}, headers=admin_token
    )
    token = await made.json()
    assert token["token"].startswith("pf_")
    listed = await (await client.get("/api/v1/tokens", headers=admin_token)).json()
    assert "token" not in listed["items"][0]

    first = await client.get(
        "/api/v1/audit", params={"action": "user.", "limit": "1"}, headers=admin_token
    )
    page = await first.json()
    assert [e["action"] for e in page["items"]] == ["user.disable"]
    assert page["items"][0]["actor"] == "token:admin-bot"
    older = await client.get(
        "/api/v1/audit",
        params={"action": "user.", "before": page["next"]},
        headers=admin_token,
    )
    rest = await older.json()
    assert [(e["action"], e["reason"]) for e in rest["items"]] == [("user.add", "new hire")]
    assert rest["next"] is None
    bad = await client.get("/api/v1/audit", params={"since": "yesterday"}, headers=admin_token)
    assert bad.status == 400
