"""Checkpointing a SQLite write-ahead log from a thread of its own.

In WAL mode a commit appends pages to the log; a checkpoint copies them back into the
database file and ends with an fsync. By default the commit that crosses the size limit
runs the checkpoint itself, so the ingest's writer would stop for the disk every few
batches. The store writer process turns that off for its connections and runs this
instead: a thread with its own connection that checkpoints every second. A ``PASSIVE``
checkpoint waits for no one, and SQLite releases the interpreter lock while it copies
and syncs, so the writer carries on meanwhile. Durability is unchanged: with
``synchronous=NORMAL`` a commit is never synced by itself, only checkpoints are.

A passive checkpoint never lets the log start over while the writer keeps appending to
it, so the log would grow without end (311 MB for an 86 MB database in one test); and a
thread that asks for the write lock to empty it loses the race to a writer that takes
the lock again at once. So the writer itself asks :meth:`WalCheckpointer.log_is_large`
between its transactions and, once the log passes :data:`WAL_RESTART_BYTES`, empties it
with :func:`truncate_log` (what is left to copy is little: the thread has copied the
rest).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store.engine import SQLITE_BUSY_TIMEOUT_MS

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
"""How often the log is copied back into the database file."""

WAL_RESTART_BYTES = 64 * 1024 * 1024
"""Log size past which a checkpoint makes the log start over (see the module's notes)."""


class WalCheckpointer:
    """Checkpoints ``path``'s WAL every :data:`CHECKPOINT_INTERVAL_S` until stopped.

    A context manager: the last checkpoint runs on leaving the block.
    """

    def __init__(
        self,
        path: Path,
        interval_s: float = CHECKPOINT_INTERVAL_S,
        restart_bytes: int = WAL_RESTART_BYTES,
    ) -> None:
        self.path = path
        self.interval_s = interval_s
        self.restart_bytes = restart_bytes
        self.checkpoints = 0
        self.failures = 0
        self._wal = path.with_name(path.name + "-wal")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoints", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")
            while not self._stop.wait(self.interval_s):
                self._checkpoint(db)
            self._checkpoint(db)
        finally:
            db.close()

    def _checkpoint(self, db: sqlite3.Connection) -> None:
        try:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        # A failed checkpoint loses nothing (the pages stay in the log): try next time.
        except sqlite3.Error as exc:
            self.failures += 1
            log.warning("checkpoint of %s failed: %s", self.path, exc)
        else:
            self.checkpoints += 1

    def log_is_large(self) -> bool:
        """True once the log has grown past ``restart_bytes``: time for :func:`truncate_log`."""
        try:
            return self._wal.stat().st_size > self.restart_bytes
        except FileNotFoundError:
            return False


async def truncate_log(engine: AsyncEngine) -> bool:
    """Copy what is left of the log into the database and empty it; False if busy.

    Run it from the writer, outside a transaction. Readers still using the log make it
    wait (up to the busy timeout) and then give up, to be tried again later.
    """
    async with engine.connect() as conn:
        result = await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        row = result.one()
        await conn.rollback()
    return not row[0]
