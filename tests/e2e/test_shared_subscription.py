"""Two central instances on one broker share a subscription: each message is handled once.

Both instances store into one database, as a scaled-out deployment does. Live channels
(health) are split between them by the broker; the retained state reaches both through
their ordinary subscription and is stored idempotently.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import BrokerConnection, Ingest, StoredHook
from posfleet.contract import (
    Channel,
    HealthMetrics,
    HealthReport,
    Message,
    State,
    encode,
    topic,
)
from posfleet.store import get_terminal
from posfleet.store.schema import health_samples
from tests.harness import PrivateBroker, async_wait_for

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
REPORTS_PER_TERMINAL = 150


async def test_two_instances_process_every_message_exactly_once(
    broker: PrivateBroker, sqlite_engine: AsyncEngine
) -> None:
    tag = uuid.uuid4().hex[:8]
    group = f"g{tag}"
    terminals = [f"SH-{tag}-{n}" for n in range(2)]
    seen: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}

    def hook(name: str) -> StoredHook:
        async def on_stored(messages: Sequence[Message]) -> None:
            for m in messages:
                if m.topic.terminal_id in terminals and m.topic.channel is Channel.HEALTH:
                    seen[name].append((m.topic.terminal_id, m.payload.seq))  # type: ignore[attr-defined]

        return on_stored

    def connection(name: str) -> BrokerConnection:
        return BrokerConnection(
            host=broker.central_host,
            port=broker.central_port,
            username=broker.central.username,
            password=broker.central.password,
            client_id=f"central-{name}-{tag}",
            share_group=group,
        )

    state = encode(State(online=True, agent_version="1.4.0", boot_id="b1", ts=T0))
    messages = [(topic(t, Channel.STATE), state, True) for t in terminals]
    for seq in range(1, REPORTS_PER_TERMINAL + 1):
        report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=HealthMetrics())
        messages += [(topic(t, Channel.HEALTH), encode(report), False) for t in terminals]

    async with (
        Ingest(connection("a"), sqlite_engine, on_stored=hook("a"), batch_size=20) as a,
        Ingest(connection("b"), sqlite_engine, on_stored=hook("b"), batch_size=20) as b,
    ):
        await a.wait_connected(10)
        await b.wait_connected(10)
        await asyncio.to_thread(broker.publish_as_centre, messages)
        total = REPORTS_PER_TERMINAL * len(terminals)
        await async_wait_for(
            lambda: len(seen["a"]) + len(seen["b"]) >= total,
            20,
            description=f"{total} reports handled",
        )

    handled = Counter(seen["a"] + seen["b"])
    expected = {(t, seq) for t in terminals for seq in range(1, REPORTS_PER_TERMINAL + 1)}
    assert set(handled) == expected
    assert max(handled.values()) == 1, "a report was handled by both instances"
    assert seen["a"] and seen["b"], "the broker should split the load between the two"
    async with sqlite_engine.connect() as conn:
        stored = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(health_samples)
            .where(health_samples.c.terminal_id.in_(terminals))
        )
        records = [await get_terminal(conn, t) for t in terminals]
    assert stored == len(expected)
    for record in records:
        assert record is not None
        assert record.online is True  # the retained state reached the instances
        assert (record.last_seq, record.seq_gaps) == (REPORTS_PER_TERMINAL, 0)
