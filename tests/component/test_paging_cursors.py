"""Paging by opaque, signed cursors on every paged list, through the real app and SQLite.

A client follows ``next`` and gets every row once, in order, without knowing an id; the
overflowing ``before`` values of issue 17 (above 2**63 - 1, ``²``) and any cursor that
is not the server's own (edited, made up, of another list, signed by another secret)
are a 400 problem naming the parameter, never a 500.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.paging_cursor import PagingCursors
from posfleet.store.accounts import Role, create_api_token, record_audit
from posfleet.store.incidents import IncidentSpec, open_incident

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
SECRET = bytes(range(32))
Client = TestClient[web.Request, web.Application]

PAGED = {
    "/api/v1/incidents": "before",
    "/api/v1/firmware/artifacts": "before",
    "/api/v1/firmware/actions": "before",
    "/api/v1/rollouts": "before",
    "/api/v1/cases": "before",
    "/api/v1/audit": "before",
    "/api/v1/terminals": "after",
    "/api/v1/merchants": "after",
}
"""Every paged list of the API and the parameter that takes its ``next``."""

OVERFLOWING = ("99999999999999999999999", "9223372036854775808", "²", "-1", "0", "9" * 5000)
"""Issue 17's values (and neighbours): once a 500 from SQLite's INTEGER."""


@pytest.fixture
async def client(sqlite_engine: AsyncEngine) -> AsyncIterator[tuple[Client, dict[str, str]]]:
    async with sqlite_engine.begin() as conn:
        for n in range(5):
            spec = IncidentSpec(
                rule_id=f"rule.{n}",
                title=f"Incident {n}",
                component="printer",
                severity="warning",
                escalation="remote_fix",
                cause="paper",
                remedy=["load paper"],
                terminal_id=f"T-000{n}",
            )
            await open_incident(conn, spec, now=T0)
            await record_audit(conn, "user:alice", "user.add", f"u{n}", {}, "")
        token = await create_api_token(conn, "pager", Role.ADMIN)
    app = create_app(sqlite_engine, session_secret=SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client, {"Authorization": f"Bearer {token}"}


async def test_following_next_lists_every_incident_once_in_order(
    client: tuple[Client, dict[str, str]],
) -> None:
    http, headers = client
    seen: list[int] = []
    params = {"limit": "2"}
    pages = 0
    while True:
        response = await http.get("/api/v1/incidents", params=params, headers=headers)
        assert response.status == 200, await response.text()
        body = await response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        if body["next"] is None:
            break
        assert not body["next"].isdigit(), "a cursor is not a raw id"
        params = {"limit": "2", "before": body["next"]}
    assert (pages, seen) == (3, sorted(seen, reverse=True))
    assert len(set(seen)) == 5


async def test_the_audit_log_pages_by_cursor_too(client: tuple[Client, dict[str, str]]) -> None:
    http, headers = client
    first = await (await http.get("/api/v1/audit?limit=3", headers=headers)).json()
    rest = await (
        await http.get("/api/v1/audit", params={"before": first["next"]}, headers=headers)
    ).json()
    targets = [e["target"] for e in first["items"] + rest["items"]]
    assert targets == ["u4", "u3", "u2", "u1", "u0"] and rest["next"] is None


async def test_overflowing_before_values_are_a_400_problem_on_every_list(
    client: tuple[Client, dict[str, str]],
) -> None:
    http, headers = client
    for value in OVERFLOWING:
        for path, name in PAGED.items():
            response = await http.get(path, params={name: value}, headers=headers)
            assert response.status == 400, f"{path}?{name}={value[:30]}: {response.status}"
            assert response.content_type == "application/problem+json"
            problem = await response.json()
            assert problem["invalid_params"][0]["name"] == name, (path, problem)


async def test_a_cursor_that_is_not_the_servers_own_is_refused(
    client: tuple[Client, dict[str, str]],
) -> None:
    http, headers = client
    body = await (await http.get("/api/v1/incidents?limit=1", headers=headers)).json()
    good: str = body["next"]
    position, tag = good.split(".")
    forged = PagingCursors(bytes(32)).id_cursor("incidents", 10**6)
    edited = f"{position}.{'A' if tag[0] != 'A' else 'B'}{tag[1:]}"
    other_id = PagingCursors(SECRET).id_cursor("incidents", 10**6).split(".")[0] + "." + tag
    for cursor in (edited, forged, other_id, good + "x", "..", "a.b"):
        response = await http.get("/api/v1/incidents", params={"before": cursor}, headers=headers)
        assert response.status == 400, cursor
        assert (await response.json())["invalid_params"][0]["name"] == "before"
    # A cursor of one list is no cursor of another.
    response = await http.get("/api/v1/cases", params={"before": good}, headers=headers)
    assert response.status == 400
    assert (await http.get(f"/api/v1/incidents?before={good}", headers=headers)).status == 200
