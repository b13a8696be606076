"""Hypothesis-generated garbage on the real broker, between good reports.

Random bytes, JSON of the wrong shape and types, oversize payloads and topics whose
terminal id is not one: the ingest never stops, every bad message becomes a counted
dead letter, and every good report around them is stored.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from posfleet.broker_bridge import BrokerConnection, Ingest
from posfleet.contract import MAX_PAYLOAD_BYTES, Channel, HealthMetrics, HealthReport, encode
from posfleet.contract.topics import PREFIX
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.schema import dead_letters, health_samples
from tests.harness import PrivateBroker, async_wait_for

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
bad_payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    # The right keys with the wrong types.
    st.fixed_dictionaries(
        {"seq": st.text(max_size=5) | st.floats(), "ts": st.integers(), "metrics": json_values}
    ).map(lambda v: json.dumps(v).encode()),
    st.just(b"{" + b" " * (MAX_PAYLOAD_BYTES + 1) + b"}"),
)
# Topic levels the subscription matches but that are no terminal id.
bad_ids = st.text(alphabet=" $%&*.:;!?äß", min_size=1, max_size=6)
channels = st.sampled_from([Channel.HEALTH, Channel.EVENT, Channel.STATE, Channel.INVENTORY])

bad_messages = st.one_of(
    st.tuples(st.just("payload"), channels, bad_payloads),
    st.tuples(bad_ids, channels, st.just(b"{}")),
)
streams = st.lists(st.one_of(st.just(None), bad_messages), min_size=1, max_size=12)
"""None stands for a good health report; anything else for one bad message."""


def _good(seq: int) -> bytes:
    return encode(HealthReport(seq=seq, ts=T0, interval_s=60, metrics=HealthMetrics()))


Stream = list[tuple[str, Channel, bytes] | None]


async def _run(broker: PrivateBroker, db_url: str, client_id: str, stream: Stream) -> None:
    tag = uuid.uuid4().hex[:8]
    good_terminal = f"G-{tag}"
    bad_terminal = f"B-{tag}"
    planned: list[tuple[str, bytes]] = []
    good = 0
    for item in stream:
        if item is None:
            good += 1
            planned.append((f"{PREFIX}/{good_terminal}/health", _good(good)))
            continue
        kind, channel, payload = item
        level = bad_terminal if kind == "payload" else f"{kind}{tag}"
        planned.append((f"{PREFIX}/{level}/{channel.value}", payload))
    bad = len(planned) - good

    engine = create_engine(db_url)
    connection = BrokerConnection(
        host=broker.central_host,
        port=broker.central_port,
        username=broker.central.username,
        password=broker.central.password,
        client_id=client_id,
    )
    try:
        async with Ingest(connection, engine, batch_size=5) as ingest:
            await ingest.wait_connected(10)
            before = ingest.stats.dead_lettered

            def publish() -> None:
                with broker.probe(broker.central) as publisher:
                    for name, payload in planned:
                        assert not publisher.publish(name, payload).is_failure

            await asyncio.to_thread(publish)
            await async_wait_for(
                lambda: (
                    ingest.stats.dead_lettered - before >= bad
                    and ingest.stats.stored + ingest.stats.duplicates >= good
                ),
                15,
                description=f"{bad} dead letters and {good} stored",
            )
            assert ingest.stats.dead_lettered - before == bad
        async with engine.connect() as conn:
            stored = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(health_samples)
                .where(health_samples.c.terminal_id == good_terminal)
            )
            lettered = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(dead_letters.c.count), 0)).where(
                    dead_letters.c.topic.contains(tag)
                )
            )
        assert stored == good
        assert lettered == bad
    finally:
        await engine.dispose()


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(stream=streams)
def test_garbage_is_dead_lettered_and_good_reports_around_it_are_stored(
    fresh_broker: PrivateBroker,
    tmp_path: Path,
    stream: Stream,
) -> None:
    db = tmp_path / "garbage.db"
    url = f"sqlite+aiosqlite:///{db}"
    if not db.exists():
        asyncio.run(_migrate(url))
    # A broker of its own, so that the counters see no other test's retained messages.
    asyncio.run(_run(fresh_broker, url, f"central-garbage-{tmp_path.name}", stream))


async def _migrate(url: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()
