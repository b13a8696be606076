"""The fast lane: a fault a terminal reports never waits behind a health backlog.

The real Mosquitto, the store writer process and the diagnostics engine, as ``posfleet
serve`` runs them: a backlog of health reports waits in the centre's broker session, a
fault event is published after all of it, and its incident must open while most of the
backlog is still waiting; then every report of the backlog is stored all the same.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import BrokerConnection, Ingest
from posfleet.broker_bridge.ingest import HOOK_SLICE
from posfleet.contract import (
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Message,
    Severity,
    encode,
    topic,
    utcnow,
)
from posfleet.diagnostics.runtime import Diagnostics
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.incidents import IncidentRecord
from tests.harness import PrivateBroker, async_wait_for

BACKLOG = 6000


class OpenedDuring:
    """A notifier that notes how much of the backlog was stored when an incident opened."""

    def __init__(self) -> None:
        self.ingest: Ingest | None = None
        self.stored_when_opened: dict[str, int] = {}

    def notify(self, event: NotificationEvent, incident: IncidentRecord) -> None:
        if event is NotificationEvent.OPENED and incident.terminal_id and self.ingest:
            self.stored_when_opened.setdefault(incident.terminal_id, self.ingest.stats.stored)


def _publish_backlog(broker: PrivateBroker, prefix: str, fault_terminal: str) -> None:
    """BACKLOG health reports from 300 terminals, then one printer jam, all acknowledged."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"{prefix}-load", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(broker.central.username, broker.central.password)
    client.max_inflight_messages_set(1000)
    client.connect(broker.central_host, broker.central_port)
    client.loop_start()
    try:
        now = utcnow()
        infos = []
        for n in range(BACKLOG):
            report = HealthReport(
                seq=n // 300 + 1, ts=now, interval_s=10, metrics=HealthMetrics(temperature_c=35.0)
            )
            infos.append(
                client.publish(topic(f"{prefix}-{n % 300:03d}", Channel.HEALTH), encode(report), 1)
            )
        jam = FaultEvent(
            seq=1, ts=now, code="printer.jam", component=Component.PRINTER,
            severity=Severity.ERROR, detail="paper jam",
        )  # fmt: skip
        infos.append(client.publish(topic(fault_terminal, Channel.EVENT), encode(jam), qos=1))
        for info in infos:
            info.wait_for_publish(timeout=60)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


async def test_a_fault_behind_a_health_backlog_opens_its_incident_before_the_backlog_drains(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    prefix = f"FL{uuid.uuid4().hex[:6]}"
    fault_terminal = f"{prefix}-JAM"
    connection = BrokerConnection(
        host=broker.central_host,
        port=broker.central_port,
        username=broker.central.username,
        password=broker.central.password,
        client_id=f"central-{prefix}",
    )
    # The centre's sessions exist (as after any earlier run); then it is away while
    # the terminals report, and the broker queues everything for it.
    async with Ingest(connection, sqlite_engine) as ingest:
        await ingest.wait_connected(10)
    await asyncio.to_thread(_publish_backlog, broker, prefix, fault_terminal)

    opened = OpenedDuring()
    handed: list[int] = []
    async with Diagnostics(sqlite_engine, notifier=opened) as diagnostics:

        async def hook(messages: Sequence[Message]) -> None:
            handed.append(len(messages))
            await diagnostics.on_stored(messages)

        async with Ingest(
            connection, sqlite_engine, on_stored=hook, writer="process",
            batch_size=200, queue_size=400,
        ) as ingest:  # fmt: skip
            await _drain(ingest, opened, fault_terminal)
    # The bulk lane hands its batches to the hook in slices (pausing for the fast lane
    # in between); every stored message reached the hook once (the shared broker may
    # add other tests' retained state to the backlog).
    assert max(handed) <= HOOK_SLICE < 200
    assert sum(handed) == ingest.stats.stored >= BACKLOG + 1
    # Opened while most of the backlog still waited in the broker, not after it.
    assert opened.stored_when_opened[fault_terminal] < BACKLOG / 2
    assert ingest.stats.dead_lettered == 0 and ingest.stats.hook_errors == 0


async def _drain(ingest: Ingest, opened: OpenedDuring, fault_terminal: str) -> None:
    opened.ingest = ingest
    await async_wait_for(
        lambda: fault_terminal in opened.stored_when_opened,
        60,
        description="the printer jam's incident",
    )
    await async_wait_for(
        lambda: ingest.stats.stored >= BACKLOG + 1,
        120,
        description=f"all {BACKLOG} health reports and the fault stored",
    )
