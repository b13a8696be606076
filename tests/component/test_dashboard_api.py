"""The JSON API over a real, migrated SQLite database, through a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Battery,
    HealthMetrics,
    HealthReport,
    Inventory,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    State,
)
from posfleet.dashboard import REJECTIONS_KEY, create_app, requires
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.accounts import Role, create_api_token, resolve_api_token, revoke_api_token

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = bytes(range(32))
ONLINE = ["T-0001", "T-0003", "T-0004"]
OFFLINE = ["T-0002", "T-0005"]


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    eng = sqlite_engine
    async with eng.begin() as conn:
        for tid in sorted(ONLINE + OFFLINE):
            state = State(online=tid in ONLINE, agent_version="1.4.0", boot_id="b1", ts=T0)
            await apply_state(conn, tid, state, now=T0)
            inventory = Inventory(
                model="V400m",
                serial=f"SN-{tid}",
                firmware_version="5.2.1",
                agent_version="1.4.0",
                merchant_id="M-42",
                site_id="S-7",
                ts=T0,
            )
            await apply_inventory(conn, tid, inventory, now=T0)
        metrics = HealthMetrics(
            battery=Battery(percent=81, charging=False),
            printer=Printer(status=PrinterStatus.PAPER_LOW),
            network=Network(type=NetworkType.WIFI, rssi_dbm=-71, host_reachable=True),
        )
        report = HealthReport(seq=1, ts=T0, interval_s=60, metrics=metrics)
        await apply_health(conn, "T-0001", report, now=T0)
    return eng


@pytest.fixture
def app(engine: AsyncEngine) -> web.Application:
    return create_app(engine, session_secret=SECRET)


@pytest.fixture
async def client(app: web.Application) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _token(engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, f"test-{role}", role)
    return {"Authorization": f"Bearer {token}"}


async def test_healthz_needs_no_login(client: TestClient[web.Request, web.Application]) -> None:
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Authorization: Bearer"),
        ("Basic YWxpY2U6cHc=", "must read: Bearer"),
        ("Bearer pf_not-a-real-token-but-long-enough-to-look-like-one", "unknown or revoked"),
    ],
)
async def test_api_without_a_valid_token_is_401_json(
    client: TestClient[web.Request, web.Application], authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = await client.get("/api/v1/terminals", headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = await response.json()
    assert body["error"]["code"] == "unauthenticated"
    assert message in body["error"]["message"]


async def test_session_cookie_is_not_accepted_by_the_api(
    client: TestClient[web.Request, web.Application],
) -> None:
    client.session.cookie_jar.update_cookies({"pf_session": "v1.x.1.9999999999.sig"})
    response = await client.get("/api/v1/terminals")
    assert response.status == 401


async def test_viewer_lists_the_fleet_with_health(
    client: TestClient[web.Request, web.Application], engine: AsyncEngine
) -> None:
    response = await client.get("/api/v1/terminals", headers=await _token(engine, Role.VIEWER))
    assert response.status == 200
    body = await response.json()
    assert [item["terminal_id"] for item in body["items"]] == sorted(ONLINE + OFFLINE)
    assert body["next"] is None
    first = body["items"][0]
    assert first["online"] is True
    assert first["merchant_id"] == "M-42"
    assert first["health"]["printer"]["status"] == "paper_low"
    assert first["health"]["network"]["rssi_dbm"] == -71


@pytest.mark.parametrize(("online", "expected"), [("true", ONLINE), ("false", OFFLINE)])
async def test_filter_by_presence(
    client: TestClient[web.Request, web.Application],
    engine: AsyncEngine,
    online: str,
    expected: list[str],
) -> None:
    response = await client.get(
        "/api/v1/terminals", params={"online": online}, headers=await _token(engine, Role.VIEWER)
    )
    body = await response.json()
    assert [item["terminal_id"] for item in body["items"]] == expected


async def test_pagination_visits_every_terminal_once(
    client: TestClient[web.Request, web.Application], engine: AsyncEngine
) -> None:
    headers = await _token(engine, Role.VIEWER)
    seen: list[str] = []
    pages = 0
    params = {"limit": "2"}
    while True:
        body = await (await client.get("/api/v1/terminals", params=params, headers=headers)).json()
        pages += 1
        seen += [item["terminal_id"] for item in body["items"]]
        if body["next"] is None:
            break
        params = {"limit": "2", "after": body["next"]}
    assert seen == sorted(ONLINE + OFFLINE)
    assert pages == 3


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("online=yes", "online must be true or false, not 'yes'"),
        ("limit=0", "limit must be a whole number from 1 to 500, not '0'"),
        ("limit=abc", "limit must be a whole number from 1 to 500, not 'abc'"),
        ("limit=501", "from 1 to 500"),
        ("after=../../etc", "after must be a terminal id"),
        ("onlin=false", "unknown query parameter 'onlin'"),
        ("limit=1&limit=2", "give limit once"),
    ],
)
async def test_bad_query_parameters_are_400_with_a_clear_message(
    client: TestClient[web.Request, web.Application],
    app: web.Application,
    engine: AsyncEngine,
    query: str,
    message: str,
) -> None:
    headers = await _token(engine, Role.VIEWER)
    response = await client.get(f"/api/v1/terminals?{query}", headers=headers)
    assert response.status == 400
    body = await response.json()
    assert body["error"]["code"] == "invalid_parameter"
    assert message in body["error"]["message"]
    assert app[REJECTIONS_KEY].snapshot()["invalid_parameter"] == 1
    # A refused request leaves the API working for the next one.
    assert (await client.get("/api/v1/terminals", headers=headers)).status == 200


async def test_one_terminal_by_id_and_404_for_an_unknown_one(
    client: TestClient[web.Request, web.Application], engine: AsyncEngine
) -> None:
    headers = await _token(engine, Role.VIEWER)
    response = await client.get("/api/v1/terminals/T-0002", headers=headers)
    assert response.status == 200
    body = await response.json()
    assert (body["terminal_id"], body["online"], body["serial"]) == ("T-0002", False, "SN-T-0002")

    missing = await client.get("/api/v1/terminals/T-9999", headers=headers)
    assert missing.status == 404
    error = (await missing.json())["error"]
    assert error["code"] == "not_found"
    assert "T-9999" in error["message"]


async def test_unknown_api_route_is_a_json_404(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


async def test_revoked_token_is_refused_at_once(
    client: TestClient[web.Request, web.Application], engine: AsyncEngine
) -> None:
    headers = await _token(engine, Role.ADMIN)
    assert (await client.get("/api/v1/terminals", headers=headers)).status == 200
    async with engine.begin() as conn:
        who = await resolve_api_token(conn, headers["Authorization"].removeprefix("Bearer "))
        assert who is not None
        await revoke_api_token(conn, who.id)
    assert (await client.get("/api/v1/terminals", headers=headers)).status == 401


async def test_a_route_for_ops_refuses_a_viewer_token(engine: AsyncEngine) -> None:
    app = create_app(engine, session_secret=SECRET)

    @requires(Role.OPS)
    async def stage_rollout(request: web.Request) -> web.Response:
        return web.json_response({"staged": True})

    app.router.add_post("/api/v1/rollouts", stage_rollout)
    async with TestClient(TestServer(app)) as client:
        viewer = await client.post("/api/v1/rollouts", headers=await _token(engine, Role.VIEWER))
        assert viewer.status == 403
        error = (await viewer.json())["error"]
        assert error["code"] == "forbidden"
        assert "needs the ops role" in error["message"]
        admin = await client.post("/api/v1/rollouts", headers=await _token(engine, Role.ADMIN))
        assert admin.status == 200
