"""A stolen terminal login at the broker's edge, against the real Mosquitto and centre.

One running central service serves both tests. The first plays an attacker with one
terminal's valid login who connects with the centre's client ids and with another
terminal's, on both listeners, while a third terminal reports: the centre never loses
its connection or a report, and the other terminal stays online and still gets the
command queued for it. The second sends a 1 MiB payload: the broker disconnects the
sender with "Packet too large" (no PUBACK), a payload just above the contract's limit
that the broker lets through is dead-lettered and counted, the agent's own uplink
refuses to send one at all, and every good report around them is stored.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import pytest_asyncio
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from posfleet.agent.publish_guard import PayloadTooLargeError
from posfleet.agent.uplink import BrokerEndpoint, MqttUplink
from posfleet.central.broker_auth import BrokerCredentials
from posfleet.central.mosquitto import TERMINAL_MAX_PACKET_BYTES
from posfleet.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    HealthMetrics,
    HealthReport,
    State,
    encode,
    topic,
)
from posfleet.store.schema import dead_letters, health_samples
from tests.harness import (
    BAD_USERNAME_OR_PASSWORD,
    NOT_AUTHORIZED,
    MqttProbe,
    PrivateBroker,
    async_wait_for,
)
from tests.harness.central_service import CentralUnderTest, start_central

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PACKET_TOO_LARGE = 0x95
"""MQTT v5 DISCONNECT reason code "Packet too large"."""

UNSPECIFIED_ERROR = 0x80
"""What paho reports when the connection breaks under it without a DISCONNECT."""

LOAD_REPORTS = 100


@dataclass
class Edge:
    """The session's broker and one central service for the whole module."""

    broker: PrivateBroker
    central: CentralUnderTest

    async def stored(self, terminal_id: str) -> int:
        """Health reports of ``terminal_id`` in the centre's database."""
        async with self.central.service.engine.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(health_samples)
                .where(health_samples.c.terminal_id == terminal_id)
            )
        return int(count or 0)

    async def dead_letters(self, terminal_id: str) -> int:
        """Dead letters whose topic names ``terminal_id``."""
        async with self.central.service.engine.connect() as conn:
            count = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(dead_letters.c.count), 0)).where(
                    dead_letters.c.topic.contains(terminal_id)
                )
            )
        return int(count or 0)

    async def wait_count(
        self, count: Callable[[str], Awaitable[int]], terminal_id: str, n: int, what: str
    ) -> None:
        """Wait until ``count(terminal_id)`` reaches ``n``, then check it is exactly ``n``."""

        async def reached() -> bool:
            return await count(terminal_id) >= n

        await async_wait_for(reached, 10, interval=0.05, description=f"{n} {what}")
        assert await count(terminal_id) == n, what


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def edge(
    session_broker: PrivateBroker, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Edge]:
    if not session_broker.process.running:
        session_broker.start()
    var_dir = tmp_path_factory.mktemp("edge")
    url = f"sqlite+aiosqlite:///{var_dir / 'posfleet.db'}"
    async with start_central(session_broker, var_dir, url, ingest_writer="inline") as central:
        yield Edge(session_broker, central)


def _report(seq: int) -> bytes:
    return encode(
        HealthReport(seq=seq, ts=datetime.now(UTC), interval_s=60, metrics=HealthMetrics())
    )


def _command(command_id: str) -> str:
    now = datetime.now(UTC)
    return json.dumps(
        {
            "id": command_id,
            "name": "self_test",
            "args": {},
            "issued_by": "alice@support",
            "issued_at": now.isoformat(),
            "expires_at": (now + timedelta(minutes=5)).isoformat(),
        }
    )


def _attempt(host: str, port: int, login: BrokerCredentials, client_id: str) -> ReasonCode:
    """Connect as ``client_id`` with Clean Start (which would wipe a session it took over),
    subscribe to everything the way a curious attacker would, and leave."""
    with MqttProbe(host, port, login, client_id=client_id, clean_start=True) as probe:
        reason = probe.try_connect()
        if not reason.is_failure:
            probe.subscribe("pos/v1/#")
        return reason


async def test_a_terminal_login_cannot_take_over_the_centre_or_another_terminal(
    edge: Edge,
) -> None:
    broker = edge.broker
    tag = uuid.uuid4().hex[:8]
    attacker = broker.provision_terminal(f"ATK-{tag}")
    victim_id, load_id = f"VIC-{tag}", f"LOAD-{tag}"
    victim = broker.provision_terminal(victim_id)
    load = broker.provision_terminal(load_id)
    ingest = edge.central.service.ingest
    centre_id = ingest.connection.client_id
    assert centre_id.startswith("central-test-") and len(centre_id) > len("central-test-") + 16
    connects = ingest.stats.connects
    victim_probe = broker.probe(
        victim, client_id=f"agent-{victim_id}", clean_start=False, session_expiry=3600
    )
    assert not victim_probe.subscribe(topic(victim_id, Channel.CMD)).is_failure
    # Even knowing the centre's ids (they are random), and the victim's.
    stolen_ids = [centre_id, f"{centre_id}-commands", "posfleet-central", victim_id]
    stolen_ids.append(f"agent-{victim_id}")
    listeners = {
        "terminals": (broker.host, broker.port),
        "centre": (broker.central_host, broker.central_port),
    }
    outcomes: dict[tuple[str, str], int] = {}

    def attack() -> None:
        for _ in range(3):
            for client_id in stolen_ids:
                for name, (host, port) in listeners.items():
                    outcomes[(name, client_id)] = _attempt(host, port, attacker, client_id).value

    def report() -> None:
        with broker.probe(load) as probe:
            for seq in range(1, LOAD_REPORTS + 1):
                assert not probe.publish(topic(load_id, Channel.HEALTH), _report(seq)).is_failure

    await asyncio.gather(asyncio.to_thread(attack), asyncio.to_thread(report))

    # The centre's listener refuses a terminal's login whatever the client id.
    refused = {NOT_AUTHORIZED, BAD_USERNAME_OR_PASSWORD}
    assert all(outcomes[("centre", cid)] in refused for cid in stolen_ids), outcomes
    # The terminals' listener lets it in, but only as itself: nobody else is disturbed.
    assert all(outcomes[("terminals", cid)] == 0 for cid in stolen_ids), outcomes
    assert victim_probe.connected
    assert not victim_probe.publish(topic(victim_id, Channel.HEALTH), _report(1)).is_failure
    await edge.wait_count(edge.stored, load_id, LOAD_REPORTS, "load reports stored")
    assert ingest.stats.connects == connects, "the centre lost its connection"
    assert ingest.connected

    # A command queued for the victim while it is offline survives more takeover tries.
    victim_probe.close()
    with broker.probe(broker.central) as centre:
        cmd = _command(f"c-{tag}")
        assert not centre.publish(topic(victim_id, Channel.CMD), cmd).is_failure
    for client_id in (f"agent-{victim_id}", victim_id):
        assert _attempt(broker.host, broker.port, attacker, client_id).value == 0
    back = broker.probe(
        victim, client_id=f"agent-{victim_id}", clean_start=False, session_expiry=3600
    )
    try:
        received = back.wait_for_messages(1, 10, topic=topic(victim_id, Channel.CMD))
        assert json.loads(received[0].payload)["id"] == f"c-{tag}"
    finally:
        back.close()


class _RawPublisher:
    """A bare paho client that records the CONNACK's properties and the DISCONNECT reason,
    and never reconnects (paho would resend the oversized message forever)."""

    def __init__(self, broker: PrivateBroker, login: BrokerCredentials) -> None:
        self.connack: Properties | None = None
        self.disconnect: ReasonCode | None = None
        self.acks: list[ReasonCode] = []
        self.connected = threading.Event()
        self.gone = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=login.username,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        self.client.username_pw_set(login.username, login.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = lambda _c, _u, _mid, rc, _p: self.acks.append(rc)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()

    def _on_connect(self, _c: object, _u: object, _f: object, _rc: object, props: Any) -> None:
        self.connack = props
        self.connected.set()

    def _on_disconnect(self, _c: object, _u: object, _f: object, rc: Any, _p: object) -> None:
        self.disconnect = rc
        self.gone.set()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


async def test_an_oversized_publish_is_refused_or_dead_lettered_and_never_lost(
    edge: Edge,
) -> None:
    broker = edge.broker
    terminal_id = f"BIG-{uuid.uuid4().hex[:8]}"
    login = broker.provision_terminal(terminal_id)
    health = topic(terminal_id, Channel.HEALTH)
    ingest = edge.central.service.ingest
    oversize_before = ingest.stats.oversize
    with broker.probe(login) as probe:
        assert not probe.publish(health, _report(1)).is_failure

    # 1 MiB: the broker says how much it takes, and disconnects the sender: no PUBACK.
    raw = _RawPublisher(broker, login)
    try:
        assert await asyncio.to_thread(raw.connected.wait, 5)
        assert raw.connack is not None
        assert getattr(raw.connack, "MaximumPacketSize", None) == TERMINAL_MAX_PACKET_BYTES
        raw.client.publish(health, b"x" * (1 << 20), qos=1)
        assert await asyncio.to_thread(raw.gone.wait, 5)
        # The broker's DISCONNECT may be lost when it closes the socket mid-upload.
        assert raw.disconnect is not None and raw.disconnect.is_failure
        assert raw.disconnect.value in (PACKET_TOO_LARGE, UNSPECIFIED_ERROR)
        assert raw.acks == []
    finally:
        raw.close()
    said = f"Client {terminal_id} disconnected due to oversize packet."
    await async_wait_for(
        lambda: said in broker.process.log_path.read_text(errors="replace"),
        5,
        description="the broker's log line for the oversized packet",
    )

    # Just above the contract's limit, but inside the packet limit: it reaches the
    # centre, which dead-letters and counts it.
    with broker.probe(login) as probe:
        assert not probe.publish(health, _report(2)).is_failure
        padded = b'{"seq":3,"pad":"' + b"x" * MAX_PAYLOAD_BYTES + b'"}'
        assert not probe.publish(health, padded).is_failure
        assert not probe.publish(health, _report(4)).is_failure

    # The agent's own uplink never sends one: a clear error, counted, still connected.
    endpoint = BrokerEndpoint(broker.host, broker.port, terminal_id, login.password, "agent-x")
    offline = encode(State(online=False, agent_version="1.0.0", boot_id="b", ts=datetime.now(UTC)))
    async with MqttUplink(terminal_id, endpoint, will=offline, offline=offline) as uplink:
        await asyncio.wait_for(uplink.wait_connected(), 10)
        with pytest.raises(PayloadTooLargeError, match="exceeds the contract's limit"):
            await uplink.publish(Channel.HEALTH, b"x" * (1 << 20))
        assert uplink.guard.refused == 1
        await asyncio.wait_for(uplink.publish(Channel.HEALTH, _report(5)), 5)
        assert uplink.is_connected()

    await edge.wait_count(edge.stored, terminal_id, 4, "good reports stored")
    await edge.wait_count(edge.dead_letters, terminal_id, 1, "oversized reports dead-lettered")
    assert ingest.stats.oversize - oversize_before == 1
    async with edge.central.http.get(
        edge.central.service.url + "/metrics",
        headers={"Authorization": f"Bearer {edge.central.token}"},
    ) as response:
        metrics = await response.text()
    assert f"posfleet_ingest_oversize_total {ingest.stats.oversize}" in metrics.splitlines()
