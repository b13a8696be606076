"""The ingest against the session's real Mosquitto: what terminals publish gets stored.

Every test uses terminal ids and a central client id of its own, since the broker (and
its persistent sessions) is shared by the whole test session.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import BrokerConnection, Ingest, NotSubscribedError
from posfleet.contract import (
    Channel,
    HealthMetrics,
    HealthReport,
    Inventory,
    Message,
    State,
    encode,
    topic,
)
from posfleet.store import (
    TerminalRecord,
    get_terminal,
    list_dead_letters,
)
from tests.harness import MqttProbe, PrivateBroker, async_wait_for

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


def central_connection(broker: PrivateBroker, password: str | None = None) -> BrokerConnection:
    return BrokerConnection(
        host=broker.central_host,
        port=broker.central_port,
        username=broker.central.username,
        password=password or broker.central.password,
        client_id=unique("central"),
    )


async def publish(
    probe: MqttProbe, terminal_id: str, channel: Channel, payload: bytes, *, retain: bool = False
) -> None:
    reason = await asyncio.to_thread(
        probe.publish, topic(terminal_id, channel), payload, retain=retain
    )
    assert not reason.is_failure, reason


def state(online: bool) -> bytes:
    return encode(State(online=online, agent_version="1.4.0", boot_id="boot-1", ts=T0))


def health(seq: int) -> bytes:
    metrics = HealthMetrics(temperature_c=38.0)
    return encode(HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics))


async def record_of(sqlite_engine: AsyncEngine, terminal_id: str) -> TerminalRecord | None:
    async with sqlite_engine.connect() as conn:
        return await get_terminal(conn, terminal_id)


async def wait_for_record(
    sqlite_engine: AsyncEngine,
    terminal_id: str,
    condition: Callable[[TerminalRecord], bool],
    description: str,
) -> TerminalRecord:
    """Poll the store until the terminal's record satisfies ``condition``."""

    async def check() -> TerminalRecord | None:
        record = await record_of(sqlite_engine, terminal_id)
        return record if record is not None and condition(record) else None

    found = await async_wait_for(check, 10, description=description)
    assert found is not None
    return found


async def test_what_a_terminal_publishes_is_stored_and_junk_dead_lettered(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    terminal_id = unique("T")
    credentials = broker.provision_terminal(terminal_id)
    async with Ingest(central_connection(broker), sqlite_engine) as ingest:
        await ingest.wait_connected(10)
        with broker.probe(credentials) as terminal:
            await publish(terminal, terminal_id, Channel.STATE, state(True), retain=True)
            inventory = Inventory(
                model="V400m", serial="SN-9", firmware_version="5.2.1", agent_version="1.4.0", ts=T0
            )
            await publish(terminal, terminal_id, Channel.INVENTORY, encode(inventory), retain=True)
            await publish(terminal, terminal_id, Channel.HEALTH, health(1))
            await publish(terminal, terminal_id, Channel.HEALTH, b'{"seq": 2, "ts": 5}')
            await publish(terminal, terminal_id, Channel.HEALTH, health(3))

        await wait_for_record(
            sqlite_engine, terminal_id, lambda r: r.health_seq == 3, "health seq 3 to be stored"
        )
        # The shared broker may also hand us other tests' retained messages: count ours.
        assert ingest.stats.dead_lettered >= 1
        assert ingest.stats.received >= 5

    record = await record_of(sqlite_engine, terminal_id)
    assert record is not None
    assert (record.online, record.model, record.firmware_version) == (True, "V400m", "5.2.1")
    assert (record.last_seq, record.seq_gaps) == (3, 1)
    async with sqlite_engine.connect() as conn:
        letters = await list_dead_letters(conn)
    mine = [letter.topic for letter in letters if terminal_id in letter.topic]
    assert mine == [topic(terminal_id, Channel.HEALTH)]


async def test_retained_offline_state_is_picked_up_on_subscribe(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    terminal_id = unique("T")
    credentials = broker.provision_terminal(terminal_id)
    with broker.probe(credentials) as terminal:
        # What the broker leaves retained after a terminal's LWT fired.
        await publish(terminal, terminal_id, Channel.STATE, state(False), retain=True)
    async with Ingest(central_connection(broker), sqlite_engine) as ingest:
        await ingest.wait_connected(10)
        record = await wait_for_record(
            sqlite_engine, terminal_id, lambda r: True, "the retained state"
        )
    assert record.online is False
    assert record.boot_id == "boot-1"


async def test_messages_sent_while_central_is_down_arrive_after_restart(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    terminal_id = unique("T")
    credentials = broker.provision_terminal(terminal_id)
    connection = central_connection(broker)
    async with Ingest(connection, sqlite_engine) as ingest:
        await ingest.wait_connected(10)
    # The persistent session keeps our subscriptions and queues QoS 1 messages meanwhile.
    with broker.probe(credentials) as terminal:
        for seq in (1, 2, 3):
            await publish(terminal, terminal_id, Channel.HEALTH, health(seq))
    async with Ingest(connection, sqlite_engine) as ingest:
        await ingest.wait_connected(10)
        record = await wait_for_record(
            sqlite_engine, terminal_id, lambda r: r.last_seq == 3, "the queued reports"
        )
    assert (record.seq_gaps, record.seq_duplicates) == (0, 0)
    # Their acknowledgements reached the broker once the batch was stored: the next
    # start gets only what was published since, not the three again.
    with broker.probe(credentials) as terminal:
        await publish(terminal, terminal_id, Channel.HEALTH, health(4))
    async with Ingest(connection, sqlite_engine) as ingest:
        await ingest.wait_connected(10)
        await wait_for_record(sqlite_engine, terminal_id, lambda r: r.last_seq == 4, "report 4")
        assert (ingest.stats.received, ingest.stats.duplicates) == (1, 0)


async def test_wrong_password_is_reported_by_wait_connected(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    connection = central_connection(broker, password="not-the-password")
    async with Ingest(connection, sqlite_engine) as ingest:
        with pytest.raises(NotSubscribedError, match="refused the connection"):
            await ingest.wait_connected(3)


async def test_a_burst_larger_than_the_queue_is_stored_without_loss(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    terminal_id = unique("T")
    credentials = broker.provision_terminal(terminal_id)
    burst = 300
    mine: list[Message] = []

    async def on_stored(messages: Sequence[Message]) -> None:
        mine.extend(m for m in messages if m.topic.terminal_id == terminal_id)

    # A queue of 4 forces the paho thread to wait for room many times over.
    connection = central_connection(broker)
    async with Ingest(
        connection, sqlite_engine, on_stored=on_stored, queue_size=4, batch_size=3
    ) as ingest:
        await ingest.wait_connected(10)
        with broker.probe(credentials) as terminal:
            for seq in range(1, burst + 1):
                await publish(terminal, terminal_id, Channel.HEALTH, health(seq))
        record = await wait_for_record(
            sqlite_engine, terminal_id, lambda r: r.last_seq == burst, f"all {burst} reports"
        )
        assert ingest.stats.queue_depth <= 4
    assert (record.seq_gaps, record.seq_duplicates) == (0, 0)
    assert [m.payload.seq for m in mine] == list(range(1, burst + 1))  # type: ignore[attr-defined]
