"""The store writer's WAL checkpointer: commits never checkpoint, the thread does."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import store_batch
from posfleet.contract import utcnow
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.engine import write_transaction
from posfleet.store.wal_checkpoints import WalCheckpointer, truncate_log
from tests.harness import async_wait_for
from tests.harness.raw_messages import health_msg


def rows_in_main_file(path: Path) -> int:
    """Samples in the database file itself, ignoring the write-ahead log."""
    with sqlite3.connect(f"file:{path}?immutable=1", uri=True) as db:
        (count,) = db.execute("SELECT count(*) FROM health_samples").fetchone()
    return int(count)


async def store_reports(engine: AsyncEngine, count: int) -> None:
    async with write_transaction(engine) as conn:
        batch = [health_msg("T-1", seq) for seq in range(1, count + 1)]
        await store_batch(conn, batch, now=utcnow())


async def test_commits_stay_in_the_log_until_the_checkpointer_copies_them(tmp_path: Path) -> None:
    path = tmp_path / "posfleet.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_auto_checkpoint=False)
    try:
        await upgrade_engine(engine)
        with WalCheckpointer(path, interval_s=3600):
            pass  # only the last checkpoint, on leaving: the schema is now in the file
        await store_reports(engine, 50)
        # Readers see the rows (through the log); the file itself does not hold them yet.
        assert rows_in_main_file(path) == 0
        with WalCheckpointer(path, interval_s=0.05) as checkpointer:
            await async_wait_for(lambda: rows_in_main_file(path) == 50, description="a checkpoint")
            await store_reports(engine, 80)
        # Leaving the block runs a last checkpoint.
        assert rows_in_main_file(path) == 80
        assert checkpointer.checkpoints >= 2
        assert checkpointer.failures == 0
    finally:
        await engine.dispose()


async def test_a_large_log_is_emptied_by_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "posfleet.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}", sqlite_auto_checkpoint=False)
    try:
        await upgrade_engine(engine)
        with WalCheckpointer(path, interval_s=3600, restart_bytes=64 * 1024) as checkpointer:
            await store_reports(engine, 200)
            assert checkpointer.log_is_large()
            assert await truncate_log(engine)
            assert not checkpointer.log_is_large()
        assert path.with_name("posfleet.db-wal").stat().st_size == 0
        assert rows_in_main_file(path) == 200
    finally:
        await engine.dispose()
