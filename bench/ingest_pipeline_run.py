"""Benchmark plumbing: drain a preloaded session through the full ingest pipeline.

Full pipeline = what ``posfleet serve`` runs per message: validation at the edge, dead
letter checks, the fleet registry, SQL telemetry (raw samples, and the hourly rollups
folded from them: a drain is timed until the last sample is folded), the manual
acknowledgement after commit, and the ``on_stored`` hook diagnostics will use.
"""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.ingest_broker_load import BenchBroker
from posfleet.broker_bridge import BrokerConnection, Ingest, WriterKind, tune_gc
from posfleet.central.broker_auth import BrokerCredentials
from posfleet.contract import Message
from posfleet.store import create_engine, fold_samples, upgrade_engine


@dataclass(frozen=True)
class Drain:
    """One drain of a backlog through the full pipeline."""

    seconds: float
    """From connecting until every message is stored and every sample folded."""
    hooked: int
    """Messages the ``on_stored`` hook saw."""
    fold_seconds: float
    """The part of ``seconds`` spent folding what the writer had not folded yet."""


def connection(
    host: str,
    port: int,
    credentials: BrokerCredentials,
    client_id: str,
    share_group: str | None = None,
) -> BrokerConnection:
    """The bridge's connection for a benchmark client."""
    return BrokerConnection(
        host=host,
        port=port,
        username=credentials.username,
        password=credentials.password,
        client_id=client_id,
        share_group=share_group,
        session_expiry_s=3600,
    )


@dataclass(frozen=True)
class PreparedRound:
    """One round's backlog, queued for a bare subscriber and a drain under test."""

    bare_id: str
    drain_id: str
    database: Path
    url: str
    conn: BrokerConnection
    """The drain's connection (its client id is ``drain_id``)."""
    publish_s: float


def prepare_round(
    bench: BenchBroker, work: Path, label: str, number: int, *, terminals: int, per_terminal: int
) -> PreparedRound:
    """Sessions for ``<label>-bare-N`` and ``<label>-N``, the backlog published once for
    both, and a migrated SQLite file for the drain."""
    filters = BrokerConnection().subscriptions()
    bare_id, drain_id = f"{label}-bare-{number}", f"{label}-{number}"
    bench.create_session(bare_id, filters)
    bench.create_session(drain_id, filters)
    total = terminals * per_terminal
    print(f"round {number}: preloading {total:,} health reports from {terminals:,} terminals")
    publish_s = bench.publish_backlog(terminals, per_terminal)
    print(f"  published in {publish_s:.1f} s ({total / publish_s:,.0f}/s)", flush=True)
    database = work / f"{label}-{number}.db"
    url = f"sqlite+aiosqlite:///{database}"
    asyncio.run(migrate(url))
    host, port = bench.broker.central_host, bench.broker.central_port
    conn = connection(host, port, bench.credentials, drain_id)
    return PreparedRound(bare_id, drain_id, database, url, conn, publish_s)


async def migrate(database_url: str) -> None:
    """Create the schema."""
    engine = create_engine(database_url)
    try:
        await upgrade_engine(engine)
    finally:
        await engine.dispose()


async def pipeline_drain(
    conn: BrokerConnection,
    database_url: str,
    expected: int,
    *,
    queue_size: int,
    batch_size: int,
    writer: WriterKind = "process",
) -> Drain:
    """Drain the session through :class:`Ingest`, then fold the rollups; how long each took."""
    engine = create_engine(database_url)
    hooked = 0
    drained = asyncio.Event()
    ingest: Ingest | None = None

    async def on_stored(messages: Sequence[Message]) -> None:
        nonlocal hooked
        hooked += len(messages)
        if ingest is not None and ingest.stats.processed >= expected:
            drained.set()

    try:
        started = time.perf_counter()
        async with Ingest(
            conn,
            engine,
            on_stored=on_stored,
            queue_size=queue_size,
            batch_size=batch_size,
            writer=writer,
        ) as ingest:
            await drained.wait()
            # The rollups are part of the work: the time counts until every stored
            # sample is folded into them (the writer folds once a minute by itself).
            folding = time.perf_counter()
            await fold_samples(engine)
            finished = time.perf_counter()
        return Drain(finished - started, hooked, finished - folding)
    finally:
        await engine.dispose()


def run_instance(
    conn: BrokerConnection,
    database_url: str,
    stop: multiprocessing.synchronize.Event,
    queue_size: int,
    batch_size: int,
) -> None:
    """One central instance in its own process, until ``stop`` is set."""
    tune_gc()

    async def main() -> None:
        engine = create_engine(database_url)
        try:
            async with Ingest(
                conn, engine, queue_size=queue_size, batch_size=batch_size, writer="process"
            ):
                await asyncio.to_thread(stop.wait)
        finally:
            await engine.dispose()

    asyncio.run(main())


def stored_samples(sqlite_path: Path) -> int:
    """Health samples in the benchmark's SQLite file (read by the parent process)."""
    with sqlite3.connect(sqlite_path, timeout=30) as db:
        (count,) = db.execute("SELECT count(*) FROM health_samples").fetchone()
    return int(count)


def rolled_up_samples(sqlite_path: Path) -> int:
    """Reports counted in the hourly rollups of the benchmark's SQLite file."""
    with sqlite3.connect(sqlite_path, timeout=30) as db:
        (count,) = db.execute("SELECT coalesce(sum(samples), 0) FROM health_rollups").fetchone()
    return int(count)
