"""The JSON API over a real, migrated SQLite database, through a real HTTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from typing import Any

import pytest
from aiohttp import ClientResponse, web
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
from posfleet.diagnostics.incident_actions import change_incident
from posfleet.diagnostics.incident_lifecycle import acknowledge, resolve_by_staff
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.accounts import Role, create_api_token, resolve_api_token, revoke_api_token
from posfleet.store.incidents import IncidentKind, IncidentSpec, open_incident, set_parent

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = bytes(range(32))
ONLINE = ["T-0001", "T-0003", "T-0004"]
OFFLINE = ["T-0002", "T-0005"]
OTHER_SHOP = ["T-0004", "T-0005"]
"""Merchant M-43 at site S-8 on firmware 5.3.0; the others are M-42 at S-7 on 5.2.1."""


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    eng = sqlite_engine
    async with eng.begin() as conn:
        for tid in sorted(ONLINE + OFFLINE):
            state = State(online=tid in ONLINE, agent_version="1.4.0", boot_id="b1", ts=T0)
            await apply_state(conn, tid, state, now=T0)
            other_shop = tid in OTHER_SHOP
            inventory = Inventory(
                model="V400m",
                serial=f"SN-{tid}",
                firmware_version="5.3.0" if other_shop else "5.2.1",
                agent_version="1.4.0",
                merchant_id="M-43" if other_shop else "M-42",
                site_id="S-8" if other_shop else "S-7",
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


async def _problem(response: ClientResponse) -> dict[str, Any]:
    """The RFC 9457 problem in ``response``, after checking its media type and status."""
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == response.status
    assert body["type"] == "about:blank"
    assert body["title"] == HTTPStatus(response.status).phrase
    return body


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
    body = await _problem(response)
    assert body["code"] == "unauthenticated"
    assert message in body["detail"]


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
        ("after=../../etc", "after must be the `next` of a previous page"),
        ("onlin=false", "unknown query parameter 'onlin'"),
        ("limit=1&limit=2", "give limit once"),
        ("limit=²", "limit must be a whole number from 1 to 500, not '²'"),
        (f"merchant_id={'M' * 65}", "merchant_id must be 1 to 64 characters long"),
        ("merchant_id=M-42&merchant=M-42", "merchant_id and merchant are the same filter"),
        ("merchantid=M-42", "expected online, model, firmware_version, merchant_id, site_id"),
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
    body = await _problem(response)
    assert body["code"] == "invalid_parameter"
    assert message in body["detail"]
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
    error = await _problem(missing)
    assert error["code"] == "not_found"
    assert "T-9999" in error["detail"]


async def test_unknown_api_route_is_a_json_404(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/api/v1/nothing-here")
    assert response.status == 404
    assert (await _problem(response))["code"] == "not_found"


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

    app.router.add_post("/api/v1/stage", stage_rollout)
    async with TestClient(TestServer(app)) as client:
        viewer = await client.post("/api/v1/stage", headers=await _token(engine, Role.VIEWER))
        assert viewer.status == 403
        error = await _problem(viewer)
        assert error["code"] == "forbidden"
        assert "needs the ops role" in error["detail"]
        admin = await client.post("/api/v1/stage", headers=await _token(engine, Role.ADMIN))
        assert admin.status == 200


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"merchant_id": "M-43"}, OTHER_SHOP),
        ({"merchant": "M-43"}, OTHER_SHOP),
        ({"site_id": "S-7"}, ["T-0001", "T-0002", "T-0003"]),
        ({"firmware_version": "5.3.0"}, OTHER_SHOP),
        ({"merchant_id": "M-42", "online": "true"}, ["T-0001", "T-0003"]),
        ({"model": "V400m", "merchant_id": "M-404"}, []),
    ],
)
async def test_terminal_filters_are_named_after_the_json_fields_they_match(
    client: TestClient[web.Request, web.Application],
    engine: AsyncEngine,
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = await client.get(
        "/api/v1/terminals", params=params, headers=await _token(engine, Role.VIEWER)
    )
    assert response.status == 200, await response.text()
    items = (await response.json())["items"]
    assert [item["terminal_id"] for item in items] == expected
    for item in items:
        for name, value in params.items():
            field = {"merchant": "merchant_id"}.get(name, name)
            assert item[field] == (value == "true" if name == "online" else value)


@pytest.mark.parametrize(
    ("path", "unknown", "expected_in_detail"),
    [
        ("/api/v1/terminals?colour=red&merchantid=M-42", ["colour", "merchantid"], "merchant_id"),
        ("/api/v1/terminals/T-0001?verbose=1", ["verbose"], "unknown query parameter"),
        ("/api/v1/incidents?merchant=M-42&state=open&zz=1", ["merchant", "zz"], "merchant_id"),
        ("/api/v1/incidents/analytics?days=30", ["days"], "since, until, bucket, top"),
    ],
)
async def test_unknown_parameters_are_a_problem_naming_each_of_them(
    client: TestClient[web.Request, web.Application],
    *,
    app: web.Application,
    engine: AsyncEngine,
    path: str,
    unknown: list[str],
    expected_in_detail: str,
) -> None:
    response = await client.get(path, headers=await _token(engine, Role.VIEWER))
    assert response.status == 400
    problem = await _problem(response)
    assert problem["code"] == "invalid_parameter"
    assert [p["name"] for p in problem["invalid_params"]] == unknown
    assert all("unknown parameter" in p["reason"] for p in problem["invalid_params"])
    assert expected_in_detail in problem["detail"]
    assert app[REJECTIONS_KEY].snapshot() == {"invalid_parameter": 1}


SITE_OF = {"M-42": "S-7", "M-43": "S-8"}


def _incident(terminal_id: str, rule_id: str, severity: str, merchant_id: str) -> IncidentSpec:
    return IncidentSpec(
        rule_id=rule_id,
        title=f"{rule_id} on {terminal_id}",
        component=rule_id.split(".", maxsplit=1)[0],
        severity=severity,
        escalation="remote_fix",
        cause="test",
        remedy=["look"],
        terminal_id=terminal_id,
        model="V400m",
        merchant_id=merchant_id,
        site_id=SITE_OF[merchant_id],
    )


@pytest.fixture
async def incident_ids(engine: AsyncEngine) -> dict[str, int]:
    """Four incidents: open, acknowledged, resolved, and a fleet incident with one child."""
    async with engine.begin() as conn:
        paper, _ = await open_incident(
            conn, _incident("T-0001", "printer.paper_out", "error", "M-42"), now=T0
        )
        reader, _ = await open_incident(
            conn, _incident("T-0004", "card_reader.read_errors", "warning", "M-43"), now=T0
        )
        await change_incident(conn, reader, partial(acknowledge, by="alice", now=T0))
        old, _ = await open_incident(
            conn, _incident("T-0002", "printer.paper_out", "error", "M-42"), now=T0
        )
        await change_incident(
            conn, old, partial(resolve_by_staff, by="alice", resolution="", now=T0)
        )
        host = IncidentSpec(
            rule_id="host.unreachable",
            title="Site S-7 cannot reach its acquirer host",
            component="network",
            severity="critical",
            escalation="on_site",
            cause="router",
            remedy=["restart the router"],
            kind=IncidentKind.FLEET,
            correlation="site:S-7",
            merchant_id="M-42",
            site_id="S-7",
        )
        fleet, _ = await open_incident(conn, host, now=T0)
        child, _ = await open_incident(
            conn, _incident("T-0003", "host.unreachable", "critical", "M-42"), now=T0
        )
        await set_parent(conn, [child], fleet, now=T0)
    return {"paper": paper, "reader": reader, "old": old, "fleet": fleet, "child": child}


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["child", "fleet", "old", "reader", "paper"]),
        ({"state": "all"}, ["child", "fleet", "old", "reader", "paper"]),
        ({"state": "open,acknowledged"}, ["child", "fleet", "reader", "paper"]),
        ({"state": "resolved"}, ["old"]),
        ({"merchant_id": "M-43"}, ["reader"]),
        ({"site_id": "S-7", "state": "open"}, ["child", "fleet", "paper"]),
        ({"severity": "warning"}, ["reader"]),
        ({"terminal_id": "T-0001"}, ["paper"]),
        ({"rule_id": "printer.paper_out"}, ["old", "paper"]),
        ({"kind": "fleet"}, ["fleet"]),
        ({"top_level": "1"}, ["fleet", "old", "reader", "paper"]),
        ({"limit": "2"}, ["child", "fleet"]),
    ],
)
async def test_incident_filters_are_named_after_the_json_fields_they_match(
    client: TestClient[web.Request, web.Application],
    engine: AsyncEngine,
    incident_ids: dict[str, int],
    params: dict[str, str],
    expected: list[str],
) -> None:
    response = await client.get(
        "/api/v1/incidents", params=params, headers=await _token(engine, Role.VIEWER)
    )
    assert response.status == 200, await response.text()
    names = {number: name for name, number in incident_ids.items()}
    items = (await response.json())["items"]
    assert [names[item["id"]] for item in items] == expected
    for item in items:
        for name in ("merchant_id", "site_id", "severity", "terminal_id", "rule_id", "kind"):
            if name in params:
                assert item[name] == params[name]


async def test_a_fleet_incidents_children_by_parent_id(
    client: TestClient[web.Request, web.Application],
    engine: AsyncEngine,
    incident_ids: dict[str, int],
) -> None:
    response = await client.get(
        "/api/v1/incidents",
        params={"parent_id": str(incident_ids["fleet"])},
        headers=await _token(engine, Role.VIEWER),
    )
    items = (await response.json())["items"]
    assert [item["id"] for item in items] == [incident_ids["child"]]
    assert items[0]["parent_id"] == incident_ids["fleet"]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/incidents?before=99999999999999999999999", "before"),
        ("/api/v1/incidents?before=9223372036854775808", "before"),
        ("/api/v1/incidents?before=²", "before"),
        ("/api/v1/incidents?before=-1", "before"),
        ("/api/v1/incidents?before=0", "before"),
        (f"/api/v1/incidents?before={'9' * 5000}", "before"),
        ("/api/v1/incidents?parent_id=9223372036854775808", "parent_id"),
        ("/api/v1/incidents?limit=²", "limit"),
        ("/api/v1/incidents?state=closed", "state"),
        ("/api/v1/incidents?top_level=yes", "top_level"),
        ("/api/v1/incidents?severity=bad", "severity"),
        ("/api/v1/incidents?terminal_id=../x", "terminal_id"),
        ("/api/v1/incidents?kind=site", "kind"),
        ("/api/v1/incidents/²", "incident_id"),
        ("/api/v1/incidents/99999999999999999999", "incident_id"),
        ("/api/v1/incidents/analytics?top=²", "top"),
        ("/api/v1/incidents/analytics?since=yesterday", "since"),
    ],
)
async def test_out_of_range_and_odd_incident_parameters_are_a_400_not_a_500(
    client: TestClient[web.Request, web.Application],
    *,
    app: web.Application,
    engine: AsyncEngine,
    incident_ids: dict[str, int],
    path: str,
    name: str,
) -> None:
    headers = await _token(engine, Role.VIEWER)
    response = await client.get(path, headers=headers)
    assert response.status == 400, await response.text()
    problem = await _problem(response)
    assert [p["name"] for p in problem["invalid_params"]] == [name]
    assert problem["detail"].startswith(name.replace("incident_id", "incident id"))
    assert app[REJECTIONS_KEY].snapshot() == {"invalid_parameter": 1}
    # The server is fine afterwards.
    assert (await client.get("/api/v1/incidents", headers=headers)).status == 200
