"""The small parts behind the store writer process: frames, timestamps, retry policy,
preparing batches and single-report rollups."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import OperationalError

from posfleet.broker_bridge.ingest_batch import (
    DECODE_SLICE,
    RawMessage,
    is_transient,
    prepare_batch,
)
from posfleet.broker_bridge.worker_frames import FrameError, encode_frame, read_frame
from posfleet.contract import Channel, topic
from posfleet.store.driver_sql import chunks, sqlite_timestamp
from posfleet.store.report_batch import Sample
from tests.harness.raw_messages import health_msg

_SQLALCHEMY_SQLITE_DATETIME = sqlite.DATETIME().bind_processor(sqlite.dialect())  # type: ignore[no-untyped-call]


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone.min]),
    )
)
def test_driver_timestamps_are_stored_exactly_as_sqlalchemy_stores_them(value: datetime) -> None:
    # UtcDateTime hands SQLite's DATETIME the naive UTC time; ours must be the same text.
    naive_utc = value.astimezone(UTC).replace(tzinfo=None)
    assert _SQLALCHEMY_SQLITE_DATETIME is not None
    assert sqlite_timestamp(value) == _SQLALCHEMY_SQLITE_DATETIME(naive_utc)


def test_a_naive_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="UTC offset"):
        sqlite_timestamp(datetime(2026, 3, 2, 9, 30))


def _feed(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_frames_round_trip_and_end_cleanly() -> None:
    reader = _feed(encode_frame(("store", 1, [("pos/v1/T-1/health", b"{}")])) + encode_frame(None))

    assert await read_frame(reader) == ("store", 1, [("pos/v1/T-1/health", b"{}")])
    assert await read_frame(reader) is None  # a None message, then the end of the stream
    assert await read_frame(reader) is None


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x00\x00", "inside a frame header"),
        (encode_frame("x" * 100)[:20], "inside a frame"),
        (b"\xff\xff\xff\xff", "corrupt"),
    ],
)
async def test_a_broken_stream_is_a_frame_error(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason):
        await read_frame(_feed(data))


def _sqlite_error(message: str) -> OperationalError:
    return OperationalError("UPDATE terminals ...", {}, sqlite3.OperationalError(message))


def test_a_locked_sqlite_file_is_retried_but_a_bad_statement_is_not() -> None:
    assert is_transient(_sqlite_error("database is locked"))
    assert is_transient(_sqlite_error("disk I/O error"))
    # The same exception class, and a bug: retrying it forever would stall ingest.
    assert not is_transient(_sqlite_error('near "{": syntax error'))
    assert not is_transient(_sqlite_error("no such column: batch_id"))


@given(st.integers(min_value=0, max_value=5000))
def test_statements_come_in_few_sizes_and_cover_every_row(count: int) -> None:
    rows = list(range(count))
    pieces = list(chunks(rows))

    assert [row for piece in pieces for row in piece] == rows
    # Sizes from a short fixed list, so the prepared statements are reused batch to batch.
    assert {len(piece) for piece in pieces} <= {1000, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1}


async def test_a_batch_is_validated_once_in_slices_that_let_other_work_run() -> None:
    good = [health_msg(f"T-{n}", n) for n in range(3 * DECODE_SLICE)]
    batch = [*good[:5], RawMessage("pos/v1/T-1/nonsense", b"{}"), *good[5:]]
    batch.append(RawMessage(topic("T-9", Channel.HEALTH), b"not json"))
    turns = 0

    async def other_work() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    beside = asyncio.create_task(other_work())
    await asyncio.sleep(0)
    before = turns
    prepared = await prepare_batch(batch)
    beside.cancel()

    # A fast-lane batch or an acknowledgement gets a turn between slices.
    assert turns - before >= 3
    assert prepared.positions == [p for p in range(len(batch)) if p not in (5, len(batch) - 1)]
    assert [m.topic.terminal_id for m in prepared.messages] == [t.topic[7:-7] for t in good]
    # Health goes to the store as samples, decoded from the same validation.
    samples = prepared.request.items
    assert [s.seq for s in samples if isinstance(s, Sample)] == list(range(3 * DECODE_SLICE))
    rejected = prepared.request.rejected
    assert [topic for topic, _, _ in rejected] == ["pos/v1/T-1/nonsense", batch[-1].topic]
    assert "unknown channel" in rejected[0][2]
