"""``/metrics`` and the filtered fleet API, through a real HTTP server and SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import Ingest, RawMessage
from posfleet.contract import Channel, HealthMetrics, HealthReport, Inventory, State, encode, topic
from posfleet.dashboard import create_app
from posfleet.dashboard.metrics_endpoint import DIAGNOSTICS_STATS_KEY, INGEST_KEY
from posfleet.diagnostics.runtime import DiagnosticsStats
from posfleet.store import list_dead_letters
from posfleet.store.accounts import Role, create_api_token
from tests.harness.brokerless_ingest import brokerless_ingest

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def ingest(sqlite_engine: AsyncEngine) -> AsyncIterator[Ingest]:
    """An ingest fed batches directly (no broker), as the bridge would after receiving."""
    async with brokerless_ingest(sqlite_engine) as bridge:
        await _fill(bridge)
        yield bridge


async def _fill(bridge: Ingest) -> None:
    state = encode(State(online=True, agent_version="1.4.0", boot_id="b", ts=T0))
    report = encode(HealthReport(seq=1, ts=T0, interval_s=60, metrics=HealthMetrics()))
    await bridge.process_batch(
        [
            RawMessage(topic("T-1", Channel.STATE), state),
            RawMessage(topic("T-1", Channel.HEALTH), report),
            RawMessage(topic("T-1", Channel.HEALTH), report),  # a redelivery
            RawMessage(topic("T-1", Channel.HEALTH), b"{broken"),
        ]
    )


@pytest.fixture
async def client(sqlite_engine: AsyncEngine, ingest: Ingest) -> AsyncIterator[Client]:
    app = create_app(sqlite_engine, session_secret=bytes(range(32)))
    app[INGEST_KEY] = ingest
    app[DIAGNOSTICS_STATS_KEY] = DiagnosticsStats(rules=22, worker_restarts=1, failed_requests=2)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def bearer(sqlite_engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, f"metrics-{role}", role)
    return {"Authorization": f"Bearer {token}"}


def samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            found[name] = float(value)
    return found


async def test_metrics_show_what_the_ingest_did(sqlite_engine: AsyncEngine, client: Client) -> None:
    response = await client.get("/metrics", headers=await bearer(sqlite_engine, Role.OPS))
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    values = samples(await response.text())
    assert values["posfleet_terminals_online"] == 1
    assert values["posfleet_ingest_messages_processed_total"] == 4
    assert values["posfleet_ingest_messages_stored_total"] == 2
    assert values["posfleet_ingest_duplicates_total"] == 1
    assert values["posfleet_ingest_dead_letters_total"] == 1
    assert values["posfleet_ingest_queue_depth"] == 0
    assert values["posfleet_ingest_decode_seconds_total"] > 0  # four were validated
    assert values['posfleet_ingest_batch_seconds_bucket{le="+Inf"}'] == 0  # fed directly
    assert values["posfleet_diagnostics_rules"] == 22
    assert values["posfleet_diagnostics_worker_restarts_total"] == 1
    assert values["posfleet_diagnostics_failed_requests_total"] == 2


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-token"}, 401),
        ({"Authorization": "Basic YWRtaW46YWRtaW4="}, 401),
    ],
)
async def test_metrics_are_never_anonymous(
    client: Client, headers: dict[str, str], status: int
) -> None:
    response = await client.get("/metrics", headers=headers)
    assert response.status == status
    assert "posfleet_ingest" not in await response.text()


async def test_metrics_need_the_ops_role(sqlite_engine: AsyncEngine, client: Client) -> None:
    response = await client.get("/metrics", headers=await bearer(sqlite_engine, Role.SUPPORT))
    assert response.status == 403


async def test_inventory_under_a_second_terminal_id_is_a_dead_letter(
    sqlite_engine: AsyncEngine, ingest: Ingest
) -> None:
    device = Inventory(model="V400m", serial="SN-1", firmware_version="5", agent_version="1", ts=T0)
    outcome = await ingest.process_batch(
        [
            RawMessage(topic("T-1", Channel.INVENTORY), encode(device)),  # T-1 is online
            RawMessage(topic("T-2", Channel.INVENTORY), encode(device)),
        ]
    )
    assert outcome is not None
    assert (len(outcome.stored), outcome.dead_lettered) == (1, 1)
    async with sqlite_engine.connect() as conn:
        letters = await list_dead_letters(conn)
    assert letters[0].topic == "pos/v1/T-2/inventory"
    assert "belongs to online terminal 'T-1'" in letters[0].error


async def test_fleet_api_filters_and_rejects_bad_filters(
    sqlite_engine: AsyncEngine, client: Client
) -> None:
    headers = await bearer(sqlite_engine, Role.VIEWER)
    response = await client.get(
        "/api/v1/terminals", params={"q": "t-1", "sort": "-last_seen"}, headers=headers
    )
    assert response.status == 200
    assert [t["terminal_id"] for t in (await response.json())["items"]] == ["T-1"]
    response = await client.get("/api/v1/terminals", params={"model": "nope"}, headers=headers)
    assert (await response.json())["items"] == []
    response = await client.get("/api/v1/terminals", params={"sort": "serial"}, headers=headers)
    assert response.status == 400
    assert "sort must be one of" in await response.text()
