"""The store writer process: same results as storing inline, and it survives its own death.

A real child process on a real SQLite file; batches fed straight to the ingest's batch
step (no broker: the broker paths run it through ``posfleet serve`` in the end-to-end
tests).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import Ingest, RawMessage, WriterKind
from posfleet.broker_bridge.batch_writers import ProcessWriter, WriterError
from posfleet.broker_bridge.ingest_batch import prepare_batch
from posfleet.contract import (
    Channel,
    CommandResult,
    CommandStatus,
    HealthReport,
    Message,
    encode,
    topic,
)
from posfleet.store import fold_samples, get_terminal, list_dead_letters, list_rollups
from posfleet.store.schema import health_rollups, health_samples
from tests.harness import async_wait_for
from tests.harness.brokerless_ingest import brokerless_ingest
from tests.harness.raw_messages import T0, health_msg, state_msg

MIXED_BATCH = [
    state_msg("T-1"),
    health_msg("T-1", 1),
    RawMessage("pos/v1/T-1/health", b'{"seq": "one"}'),
    health_msg("T-1", 2, temperature=44.0),
    health_msg("T-1", 2),  # the same report twice in one batch
    health_msg("T-2", 7),
    # Command results have no store of their own yet: acknowledged and counted as ignored.
    RawMessage(
        topic("T-2", Channel.CMD_RESULT),
        encode(CommandResult(id="c-1", status=CommandStatus.OK, ts=T0)),
    ),
]


@pytest.fixture
async def writer_process(sqlite_engine: AsyncEngine) -> AsyncIterator[Ingest]:
    """An ingest whose writer process is running (no broker connection)."""
    async with brokerless_ingest(sqlite_engine, writer="process") as ingest:
        yield ingest


def writer_pid(ingest: Ingest) -> int:
    writer = ingest._writer
    assert isinstance(writer, ProcessWriter)
    assert writer.pid is not None
    return writer.pid


async def snapshot(engine: AsyncEngine) -> tuple[object, ...]:
    """What a user would see of the batch: registry row, samples, rollup, dead letters."""
    await fold_samples(engine)  # what the writer does every minute
    async with engine.connect() as conn:
        terminal = await get_terminal(conn, "T-1")
        samples = (
            await conn.execute(
                sa.select(health_samples.c.terminal_id, health_samples.c.seq).order_by(
                    health_samples.c.terminal_id, health_samples.c.seq
                )
            )
        ).all()
        rollups = (
            await conn.execute(
                sa.select(
                    health_rollups.c.terminal_id,
                    health_rollups.c.samples,
                    health_rollups.c.temperature_max,
                ).order_by(health_rollups.c.terminal_id)
            )
        ).all()
        letters = [(d.topic, d.count) for d in await list_dead_letters(conn)]
    assert terminal is not None
    registry = (terminal.online, terminal.last_seq, terminal.seq_duplicates, terminal.health_seq)
    return registry, [tuple(r) for r in samples], [tuple(r) for r in rollups], letters


@pytest.mark.parametrize("writer", ["inline", "process"])
async def test_both_writers_store_a_mixed_batch_the_same_way(
    sqlite_engine: AsyncEngine, writer: WriterKind
) -> None:
    hooked: list[Message] = []

    async def on_stored(messages: Sequence[Message]) -> None:
        hooked.extend(messages)

    async with brokerless_ingest(sqlite_engine, writer=writer, on_stored=on_stored) as ing:
        outcome = await ing.process_batch(MIXED_BATCH)

    assert outcome is not None
    assert outcome.stored_positions == [0, 1, 3, 5]
    assert (outcome.duplicates, outcome.dead_lettered, outcome.ignored) == (1, 1, 1)
    assert [(m.topic.terminal_id, m.topic.channel) for m in hooked] == [
        ("T-1", Channel.STATE),
        ("T-1", Channel.HEALTH),
        ("T-1", Channel.HEALTH),
        ("T-2", Channel.HEALTH),
    ]
    assert hooked[2].payload == HealthReport.model_validate_json(MIXED_BATCH[3].payload)
    registry, samples, rollups, letters = await snapshot(sqlite_engine)
    assert registry == (True, 2, 1, 2)
    assert samples == [("T-1", 1), ("T-1", 2), ("T-2", 7)]
    assert rollups == [("T-1", 2, 44.0), ("T-2", 1, 41.0)]
    assert letters == [("pos/v1/T-1/health", 1)]


@pytest.mark.parametrize("writer", ["inline", "process"])
async def test_a_writer_folds_what_it_stored_into_the_rollups_when_it_stops(
    sqlite_engine: AsyncEngine, writer: WriterKind
) -> None:
    async with brokerless_ingest(sqlite_engine, writer=writer) as ing:
        await ing.process_batch([health_msg("T-1", 1), health_msg("T-1", 2), health_msg("T-2", 7)])

    # Folded by the writer on its way out: nothing left for anyone else to fold.
    assert await fold_samples(sqlite_engine) == 0
    async with sqlite_engine.connect() as conn:
        rollups = await list_rollups(conn, "T-1", since=T0 - timedelta(hours=1))
    assert [r.samples for r in rollups] == [2]


async def test_a_killed_writer_is_started_again_and_its_batch_stored_once(
    writer_process: Ingest, sqlite_engine: AsyncEngine
) -> None:
    first = writer_pid(writer_process)
    # Stopped, the writer cannot have stored the batch before it dies.
    os.kill(first, signal.SIGSTOP)
    pending = asyncio.create_task(
        writer_process.process_batch([health_msg("T-1", 1), health_msg("T-1", 2)])
    )
    writer = writer_process._writer
    assert isinstance(writer, ProcessWriter)
    await async_wait_for(lambda: writer._pending, description="the batch sent to the writer")
    os.kill(first, signal.SIGKILL)
    outcome = await asyncio.wait_for(pending, timeout=30)

    assert outcome is not None
    assert len(outcome.stored) == 2
    assert writer_process.stats.writer_restarts == 1
    assert writer_process.stats.store_retries == 1
    assert writer_pid(writer_process) != first
    again = await writer_process.process_batch([health_msg("T-1", 2), health_msg("T-1", 3)])
    assert again is not None
    assert (len(again.stored), again.duplicates) == (1, 1)
    _, samples, rollups, _ = await snapshot(sqlite_engine)
    assert samples == [("T-1", 1), ("T-1", 2), ("T-1", 3)]
    assert rollups == [("T-1", 3, 41.0)]


async def test_the_writer_stops_when_the_ingest_closes_it(writer_process: Ingest) -> None:
    pid = writer_pid(writer_process)
    await writer_process._writer.close()

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    await async_wait_for(gone, timeout=10, description=f"writer process {pid} to exit")


async def test_a_writer_that_cannot_start_says_why() -> None:
    writer = ProcessWriter("nosuchdb+driver://nowhere/posfleet")
    with pytest.raises(WriterError, match=r"did not start.*nosuchdb"):
        await writer.start()
    await writer.close()


def test_an_in_memory_database_cannot_be_shared_with_a_writer() -> None:
    with pytest.raises(WriterError, match="in-memory"):
        ProcessWriter("sqlite+aiosqlite:///:memory:")


async def test_an_urgent_batch_is_stored_before_bulk_batches_that_wait_ahead_of_it(
    writer_process: Ingest,
) -> None:
    # The fast lane's fault event must not wait for the health backlog already handed to
    # the writer: stop the writer, queue four bulk batches and then an urgent one.
    writer = writer_process._writer
    assert isinstance(writer, ProcessWriter)
    pid = writer_pid(writer_process)
    os.kill(pid, signal.SIGSTOP)
    finished: list[str] = []

    def store(name: str, batch: list[RawMessage], *, urgent: bool = False) -> asyncio.Task[None]:
        async def run() -> None:
            await writer.store((await prepare_batch(batch)).request, urgent=urgent)
            finished.append(name)

        return asyncio.create_task(run())

    tasks = [
        store(f"bulk-{n}", [health_msg(f"B-{n}", seq) for seq in range(1, 11)]) for n in range(4)
    ]
    await async_wait_for(lambda: len(writer._pending) == 4, description="bulk batches sent")
    tasks.append(store("urgent", [state_msg("U-1")], urgent=True))
    await async_wait_for(lambda: len(writer._pending) == 5, description="the urgent batch sent")
    os.kill(pid, signal.SIGCONT)
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)

    assert finished.index("urgent") < 3, finished
    # Each kind keeps its own order.
    assert [n for n in finished if n != "urgent"] == [f"bulk-{n}" for n in range(4)]
