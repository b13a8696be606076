"""``/api/v1/firmware/actions`` through a real HTTP server over a migrated SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import Channel, Command, UpdateState, UpdateStatus, utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.firmware_actions_api import FIRMWARE_OFFERS_KEY
from posfleet.firmware.action_states import RetryPolicy
from posfleet.firmware.actions import record_status
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.offers import FirmwareOffers
from posfleet.store import write_transaction
from posfleet.store.accounts import Role, create_api_token, list_audit
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest

SECRET = bytes(range(32))
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def fleet(sqlite_engine: AsyncEngine) -> AsyncEngine:
    for tid in ("T-1", "T-2", "T-3"):
        await add_terminal(sqlite_engine, tid, firmware="5.2.1")
    await add_terminal(sqlite_engine, "T-A920", model="A920")
    await add_artifact(sqlite_engine, signed_manifest("5.3.0"))
    return sqlite_engine


@pytest.fixture
def publisher() -> MemoryPublisher:
    return MemoryPublisher()


@pytest.fixture
async def client(fleet: AsyncEngine, publisher: MemoryPublisher) -> AsyncIterator[Client]:
    app = create_app(fleet, session_secret=SECRET)
    app[FIRMWARE_OFFERS_KEY] = FirmwareOffers(
        fleet,
        DownloadTokens(b"t" * 32),
        base_url="http://central.test",
        publisher=publisher,
        policy=RetryPolicy(),
    )
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _auth(engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, f"test-{role}", role)
    return {"Authorization": f"Bearer {token}"}


async def _push(client: Client, headers: dict[str, str], **body: Any) -> tuple[int, Any]:
    response = await client.post("/api/v1/firmware/actions", json=body, headers=headers)
    return response.status, await response.json()


async def test_ops_push_offers_watch_and_cancel_through_the_api(
    client: Client, fleet: AsyncEngine, publisher: MemoryPublisher
) -> None:
    ops = await _auth(fleet, Role.OPS)
    status, body = await _push(
        client,
        ops,
        artifact="pos-os@5.3.0",
        terminal_ids=["T-1", "T-2", "T-A920"],
        window="01:00-04:00",
        weekdays="mon-fri",
        deadline="48h",
        reason="security fix",
    )
    assert status == 201, body
    assert body["artifact"]["version"] == "5.3.0" and body["offered"] == 2
    assert [a["terminal_id"] for a in body["created"]] == ["T-1", "T-2"]
    assert body["created"][0]["state"] == "offered"
    assert body["created"][0]["window"] == {
        "start": "01:00",
        "end": "04:00",
        "weekdays": [0, 1, 2, 3, 4],
    }
    assert [(r["terminal_id"], r["reason"]) for r in body["refused"]] == [("T-A920", "wrong_model")]
    assert {tid for tid, _, _ in publisher.sent} == {"T-1", "T-2"}
    first = body["created"][0]["id"]

    async with write_transaction(fleet) as conn:
        status_msg = UpdateStatus(
            action_id=str(first), state=UpdateState.DOWNLOADING, progress=0.4, ts=utcnow()
        )
        await record_status(conn, "T-1", status_msg, now=utcnow(), policy=RetryPolicy())

    viewer = await _auth(fleet, Role.VIEWER)
    listed = await (await client.get("/api/v1/firmware/actions", headers=viewer)).json()
    assert [a["state"] for a in listed["items"]] == ["offered", "downloading"]
    assert listed["counts"]["by_state"]["downloading"] == 1
    assert listed["counts"]["open"] == 2 and listed["counts"]["total"] == 2
    only = await client.get(
        "/api/v1/firmware/actions", params={"state": "downloading"}, headers=viewer
    )
    assert [a["terminal_id"] for a in (await only.json())["items"]] == ["T-1"]
    shown = await (await client.get(f"/api/v1/firmware/actions/{first}", headers=viewer)).json()
    assert shown["action"]["progress"] == 0.4
    assert [e["state"] for e in shown["events"]] == ["created", "offered", "downloading"]

    refused = await client.post(f"/api/v1/firmware/actions/{first}/cancel", headers=viewer)
    assert refused.status == 403
    cancel = await client.post(
        f"/api/v1/firmware/actions/{first}/cancel", json={"reason": "wrong shop"}, headers=ops
    )
    cancelled = await cancel.json()
    assert cancel.status == 200 and cancelled["state"] == "cancelled"
    assert cancelled["terminal_notice"]["sent"] is True, cancelled
    [(told, command)] = [(t, p) for t, ch, p in publisher.sent if ch is Channel.CMD]
    assert told == "T-1" and isinstance(command, Command) and command.name == "firmware_cancel"
    again = await client.post(f"/api/v1/firmware/actions/{first}/cancel", headers=ops)
    assert again.status == 409
    problem = await again.json()
    assert again.content_type == "application/problem+json"
    assert problem["code"] == "conflict" and "already cancelled" in problem["detail"]

    summary = await client.get("/api/v1/firmware/actions/summary", headers=viewer)
    counts = await summary.json()
    assert counts["by_state"]["cancelled"] == 1 and counts["by_state"]["offered"] == 1
    async with fleet.connect() as conn:
        actions = {e.action for e in await list_audit(conn)}
    assert {"firmware.push", "firmware.cancel"} <= actions


async def test_pushes_need_ops_and_bad_pushes_are_problems_naming_the_field(
    client: Client, fleet: AsyncEngine, publisher: MemoryPublisher
) -> None:
    support = await _auth(fleet, Role.SUPPORT)
    status, body = await _push(client, support, artifact="pos-os@5.3.0", terminal_ids=["T-1"])
    assert status == 403
    ops = await _auth(fleet, Role.OPS)

    status, body = await _push(client, ops, artifact="pos-os@5.3.0", terminal_ids=[])
    assert status == 400 and body["invalid_params"][0]["name"] == "terminal_ids"
    status, body = await _push(
        client, ops, artifact="pos-os@5.3.0", terminal_ids=["T-1"], window="tonight"
    )
    assert status == 400 and body["invalid_params"] == [
        {"name": "window", "reason": "window 'tonight' must read HH:MM-HH:MM, e.g. 22:00-06:00"}
    ]
    status, body = await _push(
        client, ops, artifact="pos-os@5.3.0", terminal_ids=["T-1"], deadline="1s"
    )
    assert status == 400 and body["invalid_params"][0]["name"] == "deadline"
    status, body = await _push(client, ops, artifact="pos-os@5.3.0", terminal_ids=["T-1"], x=1)
    assert status == 400 and body["invalid_params"][0]["name"] == "x"
    status, body = await _push(client, ops, artifact="pos-os@9.0.0", terminal_ids=["T-1"])
    assert status == 404 and "pos-os@9.0.0" in body["detail"]

    status, body = await _push(client, ops, artifact="pos-os@5.3.0", terminal_ids=["T-A920"])
    assert status == 422 and body["code"] == "push_refused"
    assert body["refused"][0]["reason"] == "wrong_model"
    assert publisher.sent == []

    viewer = await _auth(fleet, Role.VIEWER)
    bad = await client.get("/api/v1/firmware/actions", params={"state": "stuck"}, headers=viewer)
    assert bad.status == 400
    missing = await client.get("/api/v1/firmware/actions/424242", headers=viewer)
    assert missing.status == 404
    nonsense = await client.get("/api/v1/firmware/actions/12x", headers=viewer)
    assert nonsense.status == 400


async def test_without_the_central_service_pushing_is_unavailable_but_reading_works(
    fleet: AsyncEngine,
) -> None:
    app = create_app(fleet, session_secret=SECRET)
    async with TestClient(TestServer(app)) as client:
        ops = await _auth(fleet, Role.OPS)
        status, body = await _push(client, ops, artifact="pos-os@5.3.0", terminal_ids=["T-1"])
        assert status == 503 and body["code"] == "unavailable"
        listed = await client.get("/api/v1/firmware/actions", headers=ops)
        assert listed.status == 200 and (await listed.json())["items"] == []
