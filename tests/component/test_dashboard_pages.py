"""The HTML dashboard: login, sessions, CSRF and the fleet overview, through a real server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from posfleet.contract import Inventory, State
from posfleet.dashboard import create_app
from posfleet.dashboard.session_tokens import SessionSigner
from posfleet.store import apply_inventory, apply_state
from posfleet.store.accounts import Role, create_user, list_audit, set_user_disabled

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
EVIL = "<script>alert(1)</script>"

Client = TestClient[web.Request, web.Application]


async def _add_terminal(
    engine: AsyncEngine, terminal_id: str, online: bool, merchant: str = "M-42"
) -> None:
    async with engine.begin() as conn:
        state = State(online=online, agent_version="1.4.0", boot_id="b1", ts=T0)
        await apply_state(conn, terminal_id, state, now=T0)
        inventory = Inventory(
            model="V400m",
            serial=f"SN-{len(terminal_id)}",
            firmware_version="5.2.1",
            agent_version="1.4.0",
            merchant_id=merchant,
            site_id="S-7",
            ts=T0,
        )
        await apply_inventory(conn, terminal_id, inventory, now=T0)


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    eng = sqlite_engine
    async with eng.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    await _add_terminal(eng, "T-0001", online=True)
    await _add_terminal(eng, "T-0002", online=False)
    return eng


@pytest.fixture
async def client(engine: AsyncEngine) -> AsyncIterator[Client]:
    app = create_app(engine, session_secret=SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


async def _login_form(client: Client) -> str:
    response = await client.get("/login")
    assert response.status == 200
    return _csrf(await response.text())


async def _log_in(client: Client, password: str = PASSWORD, **extra: str) -> ClientResponse:
    token = await _login_form(client)
    form = {"csrf_token": token, "username": "alice", "password": password, **extra}
    return await client.post("/login", data=form, allow_redirects=False)


def _session_cookie(client: Client) -> str:
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return cookies["pf_session"].value


async def test_pages_send_an_anonymous_visitor_to_login(client: Client) -> None:
    response = await client.get("/?online=true", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", "/?online=true")


async def test_login_form_is_posted_without_csrf_token_is_refused(client: Client) -> None:
    await _login_form(client)
    response = await client.post(
        "/login", data={"username": "alice", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 403
    assert "reload the page" in await response.text()
    assert "pf_session" not in response.cookies


async def test_csrf_token_of_another_browser_is_refused(
    client: Client, engine: AsyncEngine
) -> None:
    stolen = await _login_form(client)
    app = create_app(engine, session_secret=SECRET)
    async with TestClient(TestServer(app)) as other_browser:
        await other_browser.get("/login")
        form = {"csrf_token": stolen, "username": "alice", "password": PASSWORD}
        response = await other_browser.post("/login", data=form, allow_redirects=False)
    assert response.status == 403


async def test_login_then_the_fleet_table_shows_terminals_and_presence(
    client: Client, engine: AsyncEngine
) -> None:
    response = await _log_in(client)
    assert response.status == 303
    assert response.headers["Location"] == "/overview"
    set_cookie = next(h for h in response.headers.getall("Set-Cookie") if "pf_session=" in h)
    assert "HttpOnly" in set_cookie
    assert "SameSite=Strict" in set_cookie

    page = await client.get("/")
    assert page.status == 200
    html = await page.text()
    online = r'<a href="/terminals/T-0001"><code>T-0001</code></a></td><td><span class="badge ok">'
    assert re.search(online + "online</span>", html)
    offline = (
        r'<a href="/terminals/T-0002"><code>T-0002</code></a></td><td><span class="badge bad">'
    )
    assert re.search(offline + "offline</span>", html)
    assert "1 online" in html
    assert "1 offline" in html
    assert "alice" in html
    assert page.headers["Cache-Control"] == "no-store"
    assert '<script src="/static/live-section.js" defer>' in html

    fragment = await client.get("/fragments/fleet?online=false")
    fragment_html = await fragment.text()
    assert "T-0002" in fragment_html
    assert "T-0001" not in fragment_html

    async with engine.connect() as conn:
        entries = await list_audit(conn)
    assert [(e.actor, e.action, e.target) for e in entries] == [("user:alice", "login", "alice")]


async def test_login_returns_to_the_page_asked_for_but_never_off_site(client: Client) -> None:
    assert (await _log_in(client, next="/?online=false")).headers["Location"] == "/?online=false"
    client.session.cookie_jar.clear()
    assert (await _log_in(client, next="//evil.example/")).headers["Location"] == "/overview"


async def test_wrong_password_stays_on_login_with_an_error_and_is_audited(
    client: Client, engine: AsyncEngine
) -> None:
    response = await _log_in(client, password="not-the-password")
    assert response.status == 200
    html = await response.text()
    assert "Wrong username or password" in html
    assert 'value="alice"' in html
    assert "pf_session" not in response.cookies
    assert (await client.get("/", allow_redirects=False)).status == 303

    async with engine.connect() as conn:
        entries = await list_audit(conn)
    assert [(e.actor, e.action, e.target) for e in entries] == [
        ("anonymous", "login.failed", "alice")
    ]


async def test_repeated_failures_are_throttled(client: Client) -> None:
    for _ in range(5):
        assert (await _log_in(client, password="guess-guess-guess")).status == 200
    response = await _log_in(client)
    assert response.status == 429
    assert response.headers["Retry-After"] == "1"
    assert "Too many failed logins" in await response.text()


async def test_disabled_user_cannot_log_in_and_loses_the_session(
    client: Client, engine: AsyncEngine
) -> None:
    await _log_in(client)
    assert (await client.get("/", allow_redirects=False)).status == 200
    async with engine.begin() as conn:
        await set_user_disabled(conn, "alice", True)
    assert (await client.get("/", allow_redirects=False)).status == 303
    assert "Wrong username" in await (await _log_in(client)).text()


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda c: c.replace(".1.", ".2.", 1), id="other-user"),
        pytest.param(lambda c: c[:-2] + ("BB" if c.endswith("AA") else "AA"), id="forged-sig"),
        pytest.param(lambda c: c.rsplit(".", 1)[0], id="no-sig"),
        pytest.param(lambda c: "é" + c, id="not-ascii"),
    ],
)
async def test_tampered_session_cookie_is_rejected(
    client: Client, tamper: Callable[[str], str]
) -> None:
    await _log_in(client)
    cookie = _session_cookie(client)
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"pf_session": tamper(cookie)})
    response = await client.get("/", allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"].startswith("/login")


async def test_expired_session_is_rejected(client: Client) -> None:
    signer = SessionSigner(SECRET, timedelta(hours=8))
    _session, cookie = signer.issue(1, datetime.now(UTC) - timedelta(hours=9))
    client.session.cookie_jar.update_cookies({"pf_session": cookie})
    assert (await client.get("/", allow_redirects=False)).status == 303
    assert (await client.get("/fragments/fleet")).status == 401


async def test_logout_needs_csrf_and_ends_the_session_for_good(
    client: Client, engine: AsyncEngine
) -> None:
    await _log_in(client)
    cookie = _session_cookie(client)
    html = await (await client.get("/")).text()

    assert (await client.post("/logout", allow_redirects=False)).status == 403
    response = await client.post("/logout", data={"csrf_token": _csrf(html)}, allow_redirects=False)
    assert response.status == 303
    assert response.headers["Location"] == "/login"
    assert (await client.get("/", allow_redirects=False)).status == 303

    # Replaying the old, correctly signed cookie does not bring the session back.
    client.session.cookie_jar.update_cookies({"pf_session": cookie})
    assert (await client.get("/", allow_redirects=False)).status == 303
    async with engine.connect() as conn:
        actions = [e.action for e in await list_audit(conn)]
    assert actions == ["logout", "login"]


async def test_terminal_and_merchant_values_are_escaped(
    client: Client, engine: AsyncEngine
) -> None:
    # The registry stores what the ingest validated; the page must be safe even so.
    await _add_terminal(engine, f"T-{EVIL}", online=True, merchant=EVIL)
    await _log_in(client)
    html = await (await client.get("/")).text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The id in its cell and row attribute, the merchant in its cell; the link is encoded.
    assert html.count("&lt;script&gt;") == 3
    assert 'href="/terminals/T-%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in html


async def test_static_files_are_served_without_login(client: Client) -> None:
    css = await client.get("/static/dashboard.css")
    assert css.status == 200
    assert "badge" in await css.text()
    assert "Cache-Control" not in css.headers or css.headers["Cache-Control"] != "no-store"
