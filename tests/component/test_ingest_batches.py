"""The ingest's batch step, fed raw (topic, payload) pairs directly: no broker, the
store writer process as production runs it.

Whatever junk arrives, it is dead-lettered and counted, and the good messages in the
same batch are stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge import DEFAULT_HANDLERS, RawMessage
from posfleet.contract import (
    MAX_PAYLOAD_BYTES,
    Channel,
    CommandResult,
    CommandStatus,
    Message,
    encode,
)
from posfleet.store import get_terminal, list_dead_letters
from posfleet.store.report_batch import Sample, SampledMessages
from tests.harness.brokerless_ingest import brokerless_ingest
from tests.harness.raw_messages import T0, health_msg, raw, state_msg


def oversize_health() -> bytes:
    padding = "x" * MAX_PAYLOAD_BYTES
    return f'{{"seq": 9, "ts": "2026-03-02T09:30:00Z", "pad": "{padding}"}}'.encode()


BAD_INPUT = [
    pytest.param(
        RawMessage("pos/v1/T-1/health", b'{"seq": 3, "ts":'), "Invalid JSON", id="bad-json"
    ),
    pytest.param(
        RawMessage("pos/v1/T-1/health", b'{"seq": "three", "ts": "2026-03-02T09:30:00Z"}'),
        "seq",
        id="wrong-types",
    ),
    pytest.param(
        RawMessage("pos/v1/T-1/telemetry", b"{}"), "unknown channel", id="unknown-channel"
    ),
    pytest.param(RawMessage("other/app/topic", b"{}"), "not under pos/v1", id="foreign-topic"),
    pytest.param(
        RawMessage("pos/v1/T$1/state", b"{}"), "invalid terminal id", id="bad-terminal-id"
    ),
    pytest.param(RawMessage("pos/v1/T-1/health", oversize_health()), "exceeds", id="oversize"),
    pytest.param(RawMessage("pos/v1/T-1/event", b"\xff\xfe\x00"), "Invalid JSON", id="binary"),
    # Beyond what a BIGINT column holds: the contract refuses it before the database must.
    pytest.param(
        RawMessage(
            "pos/v1/T-1/health",
            b'{"seq": %d, "ts": "2026-03-02T09:30:00Z", "interval_s": 60, "metrics": {}}' % 2**70,
        ),
        "seq",
        id="seq-out-of-range",
    ),
]


@pytest.mark.parametrize(("bad", "reason"), BAD_INPUT)
async def test_bad_message_is_dead_lettered_and_its_neighbours_stored(
    sqlite_engine: AsyncEngine, bad: RawMessage, reason: str
) -> None:
    async with brokerless_ingest(sqlite_engine) as ingest:
        outcome = await ingest.process_batch(
            [state_msg("T-1"), health_msg("T-1", 1), bad, health_msg("T-1", 2)]
        )

    assert outcome is not None
    assert ingest.stats.dead_lettered == 1
    assert ingest.stats.stored == 3
    async with sqlite_engine.connect() as conn:
        record = await get_terminal(conn, "T-1")
        letters = await list_dead_letters(conn)
    assert record is not None
    assert record.online is True
    assert (record.last_seq, record.health_seq) == (2, 2)
    assert len(letters) == 1
    assert letters[0].topic == bad.topic[:256]
    assert reason in letters[0].error


async def test_counters_add_up_over_a_mixed_stream(sqlite_engine: AsyncEngine) -> None:
    stored: list[Message] = []
    samples: list[Sample | None] = []

    async def on_stored(messages: Sequence[Message]) -> None:
        stored.extend(messages)
        # The samples the store was given travel with the messages (the rule worker's).
        assert isinstance(messages, SampledMessages)
        samples.extend(messages.samples)

    junk = RawMessage("pos/v1/T-2/health", b"not json")
    # Command results have no store yet: acknowledged, counted, not dead letters.
    result = CommandResult(id="c-1", status=CommandStatus.OK, ts=T0)
    async with brokerless_ingest(sqlite_engine, on_stored=on_stored) as ingest:
        await ingest.process_batch([state_msg("T-1"), health_msg("T-1", 1), junk])
        await ingest.process_batch([health_msg("T-1", 1), junk, health_msg("T-1", 2)])
        await ingest.process_batch([raw("T-1", Channel.CMD_RESULT, encode(result))])

    stats = ingest.stats
    assert (stats.batches, stats.stored, stats.duplicates) == (3, 3, 1)
    assert (stats.dead_lettered, stats.ignored) == (2, 1)
    assert [m.topic.channel for m in stored] == [Channel.STATE, Channel.HEALTH, Channel.HEALTH]
    assert [None if s is None else (s.terminal_id, s.seq) for s in samples] == [
        None,
        ("T-1", 1),
        ("T-1", 2),
    ]
    async with sqlite_engine.connect() as conn:
        letters = await list_dead_letters(conn)
        record = await get_terminal(conn, "T-1")
    assert [(letter.topic, letter.count) for letter in letters] == [("pos/v1/T-2/health", 2)]
    assert record is not None
    assert record.seq_duplicates == 1


async def broken_health(
    conn: AsyncConnection, terminal_id: str, payload: object, /, *, now: datetime
) -> bool:
    """A handler with a bug (at module level: the store writer process imports it)."""
    raise ValueError("handler bug")


async def test_a_failing_handler_or_hook_does_not_stop_ingest(sqlite_engine: AsyncEngine) -> None:
    async def broken_hook(messages: Sequence[Message]) -> None:
        raise RuntimeError("diagnostics bug")

    handlers = {**DEFAULT_HANDLERS, Channel.HEALTH: broken_health}
    async with brokerless_ingest(sqlite_engine, handlers=handlers, on_stored=broken_hook) as ingest:
        await ingest.process_batch([health_msg("T-1", 1), state_msg("T-1")])
        await ingest.process_batch([state_msg("T-2")])

    assert ingest.stats.dead_lettered == 1
    assert ingest.stats.hook_errors == 2
    async with sqlite_engine.connect() as conn:
        letters = await list_dead_letters(conn)
        assert await get_terminal(conn, "T-2") is not None
        t1 = await get_terminal(conn, "T-1")
    assert t1 is not None
    assert t1.last_seq is None  # the failed report left nothing half-written behind
    assert letters[0].error == "store: ValueError: handler bug"
