"""Two central instances, each serving its partition of the fleet, on one broker and one
database: every message stored once, and each terminal's faults judged by one rule
engine, so an incident one instance opened is the one that resolves.

Round robin shared subscriptions (Mosquitto's) would split a terminal's messages between
two engines; this test fails that way (incidents left open), which is why the partition
mode exists.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import BrokerConnection, Ingest
from posfleet.contract import (
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Printer,
    PrinterStatus,
    Severity,
    State,
    encode,
    topic,
)
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.store.incidents import IncidentState, list_incidents
from posfleet.store.schema import health_samples
from tests.harness import PrivateBroker, async_wait_for

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
TERMINALS = 16


def _health(seq: int, status: PrinterStatus) -> bytes:
    metrics = HealthMetrics(printer=Printer(status=status))
    return encode(HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics))


def _jam(seq: int) -> bytes:
    event = FaultEvent(
        seq=seq,
        ts=T0,
        code="printer.jam",
        component=Component.PRINTER,
        severity=Severity.ERROR,
        detail="paper jam",
    )
    return encode(event)


async def test_two_partitions_store_every_message_once_and_each_fault_resolves(
    broker: PrivateBroker, engine: AsyncEngine
) -> None:
    tag = uuid.uuid4().hex[:8]
    terminals = [f"PT-{tag}-{n}" for n in range(TERMINALS)]

    def connection(share: int) -> BrokerConnection:
        return BrokerConnection(
            host=broker.central_host,
            port=broker.central_port,
            username=broker.central.username,
            password=broker.central.password,
            client_id=f"central-{share}-{tag}",
            partition=f"{share}/2",
        )

    first, second = connection(1), connection(2)
    assert first.share is not None and second.share is not None
    owners = Counter(1 if first.share.owns(t) else 2 for t in terminals)
    assert owners[1] and owners[2], "the hash should give both instances terminals"

    # Each terminal: ok, then a jam (event and health), then ok again.
    state = encode(State(online=True, agent_version="1.4.0", boot_id="b1", ts=T0))
    messages = [(topic(t, Channel.STATE), state, True) for t in terminals]
    for t in terminals:
        messages += [
            (topic(t, Channel.HEALTH), _health(1, PrinterStatus.OK), False),
            (topic(t, Channel.EVENT), _jam(2), False),
            (topic(t, Channel.HEALTH), _health(3, PrinterStatus.JAM), False),
            (topic(t, Channel.HEALTH), _health(4, PrinterStatus.OK), False),
        ]

    settings = DiagnosticsSettings(tick_interval_s=3600)
    async with (
        Diagnostics(engine, settings, owns=first.share.owns) as judge_1,
        Diagnostics(engine, settings, owns=second.share.owns) as judge_2,
        Ingest(first, engine, on_stored=judge_1.on_stored, batch_size=10) as ingest_1,
        Ingest(second, engine, on_stored=judge_2.on_stored, batch_size=10) as ingest_2,
    ):
        await ingest_1.wait_connected(10)
        await ingest_2.wait_connected(10)
        await asyncio.to_thread(broker.publish_as_centre, messages)

        async def stored() -> int:
            async with engine.connect() as conn:
                count = await conn.scalar(
                    sa.select(sa.func.count())
                    .select_from(health_samples)
                    .where(health_samples.c.terminal_id.in_(terminals))
                )
            return int(count or 0)

        await async_wait_for(
            lambda: ingest_1.stats.processed + ingest_2.stats.processed >= 5 * TERMINALS,
            30,
            description="every terminal's state, reports and event processed",
        )

        async def all_stored() -> bool:
            return await stored() >= 3 * TERMINALS

        await async_wait_for(all_stored, 15, description="every report stored")
        assert await stored() == 3 * TERMINALS, "each report stored exactly once"
        # Each instance kept only its own terminals' messages and let the others pass.
        assert ingest_1.stats.other_partition >= 5 * owners[2]
        assert ingest_2.stats.other_partition >= 5 * owners[1]

        async def resolved() -> bool:
            async with engine.connect() as conn:
                found = [i for t in terminals for i in await list_incidents(conn, terminal_id=t)]
            return len(found) == TERMINALS and all(i.state is IncidentState.RESOLVED for i in found)

        await async_wait_for(resolved, 15, description="every terminal's jam resolved")

    async with engine.connect() as conn:
        for t in terminals:
            [incident] = await list_incidents(conn, terminal_id=t)
            assert incident.rule_id == "printer.not_ready", t
