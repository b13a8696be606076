"""``/api/v1/cases`` over a migrated SQLite store, with a support token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.helpdesk import helpdesk_day
from posfleet.store.accounts import Role, create_api_token

Client = TestClient[web.Request, web.Application]
CALL = {
    "merchant_id": "M-7",
    "subject": "Printer jams",
    "complaint": "the receipt printer jams every third sale",
    "channel": "phone",
    "category": "printer",
    "terminal_ids": ["T-1"],
}


@pytest.fixture
async def api(sqlite_engine: AsyncEngine) -> AsyncIterator[Client]:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "desk", Role.SUPPORT)
    app = create_app(sqlite_engine, session_secret=bytes(range(32)))
    client = TestClient(TestServer(app), headers={"Authorization": f"Bearer {token}"})
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


async def _call(client: Client, method: str, path: str, status: int, **kw: Any) -> Any:
    response = await client.request(method, path, **kw)
    assert response.status == status, await response.text()
    return await response.json()


async def test_open_follow_up_and_close_a_case_through_the_api(api: Client) -> None:
    case = await _call(api, "POST", "/api/v1/cases", 201, json=CALL)
    path = f"/api/v1/cases/{case['id']}"
    assert case["state"] == "open" and case["terminal_ids"] == ["T-1"]
    today = helpdesk_day(utcnow()).isoformat()
    patched = await _call(
        api, "PATCH", path, 200,
        json={"state": "waiting_onsite", "reason": "technician booked", "follow_up_on": today},
    )  # fmt: skip
    assert patched["state"] == "waiting_onsite" and patched["first_response_at"]
    listed = await _call(api, "GET", "/api/v1/cases?follow_up=due_today", 200)
    assert [c["id"] for c in listed["items"]] == [case["id"]]
    assert (listed["due_today"], listed["overdue"]) == (1, 0)
    await _call(api, "POST", f"{path}/notes", 201, json={"text": "technician on Tuesday"})

    refused = await _call(api, "PATCH", path, 400, json={"state": "closed"})
    assert refused["invalid_params"][0]["name"] == "confirmation"
    await _call(api, "PATCH", path, 200, json={"state": "closed", "confirmation": "Mr Wang, phone"})
    conflict = await _call(api, "PATCH", path, 409, json={"state": "open", "reason": "again"})
    assert "closed" in conflict["detail"]
    detail = await _call(api, "GET", path, 200)
    assert [n["kind"] for n in detail["notes"]] == ["opened", "follow_up", "state", "note", "state"]
    assert detail["case"]["merchant_confirmation"] == "Mr Wang, phone"
    assert detail["resolution_s"] is not None
    assert (await _call(api, "GET", "/api/v1/cases", 200))["items"] == []  # closed: not listed
    assert len((await _call(api, "GET", "/api/v1/cases?state=all", 200))["items"]) == 1


BAD_REQUESTS = [
    ("POST", "/api/v1/cases", {**CALL, "channel": "pigeon"}, 400),
    ("POST", "/api/v1/cases", {**CALL, "terminal_ids": ["bad id!"]}, 400),
    ("POST", "/api/v1/cases", {**CALL, "surprise": 1}, 400),
    ("GET", "/api/v1/cases?state=lost", None, 400),
    ("GET", "/api/v1/cases?colour=red", None, 400),
    ("GET", "/api/v1/cases/99999999999999999999", None, 400),
    ("GET", "/api/v1/cases/42", None, 404),
    ("POST", "/api/v1/cases/1/links", {"kind": "incident", "ref": "5"}, 400),
    ("PATCH", "/api/v1/cases/1", {}, 400),
]


async def test_bad_requests_are_clear_4xx(api: Client) -> None:
    await _call(api, "POST", "/api/v1/cases", 201, json=CALL)
    for method, path, body, status in BAD_REQUESTS:
        answer = await _call(api, method, path, status, json=body)
        assert answer["detail"], (method, path)
