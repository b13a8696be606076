"""The async engine for SQLite (embedded default) or PostgreSQL (production)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from posfleet.store.errors import ForeignKeyViolationError
from posfleet.store.write_turns import writing

_WRITER_OPTION = "posfleet_writer"

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another writer's lock before failing."""


def default_database_url(var_dir: Path) -> str:
    """The embedded SQLite database under ``var_dir``."""
    return f"sqlite+aiosqlite:///{(var_dir / 'posfleet.db').resolve()}"


def create_engine(url: str, *, sqlite_auto_checkpoint: bool = True, **kwargs: Any) -> AsyncEngine:
    """An engine for ``url`` (``sqlite+aiosqlite://...`` or ``postgresql+asyncpg://...``).

    SQLite connections run in WAL mode (readers never block the ingest writer), with
    foreign keys enforced and a busy timeout instead of immediate ``database is locked``.
    With ``sqlite_auto_checkpoint=False`` a commit never checkpoints the WAL (nor waits
    for the disk's fsync that a checkpoint ends with): run a
    :class:`~posfleet.store.wal_checkpoints.WalCheckpointer` beside such an engine.
    """
    if url.startswith("sqlite"):
        engine = create_async_engine(url, **kwargs)
        _configure_sqlite(engine, SQLITE_CHECKPOINT_PAGES if sqlite_auto_checkpoint else 0)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


SQLITE_CACHE_KIB = 64 * 1024
"""Page cache per connection (64 MiB; SQLite's default is 2 MiB)."""

SQLITE_MMAP_BYTES = 1 << 30
"""Reads through a memory map of up to 1 GiB of the file instead of ``read`` calls."""


SQLITE_CHECKPOINT_PAGES = 10_000
"""WAL pages between automatic checkpoints (SQLite's default is 1,000)."""


def _configure_sqlite(engine: AsyncEngine, checkpoint_pages: int) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # The sqlite3 module's own implicit transactions break SAVEPOINT and transactional
        # DDL; switch them off and let SQLAlchemy emit BEGIN itself (see _on_begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode=WAL")
            # Durable at every checkpoint, and safe against corruption in WAL mode.
            cursor.execute("PRAGMA synchronous=NORMAL")
            # Page cache and memory-mapped reads sized for a fleet's indexes: the ingest
            # touches every terminal's rows each minute, and the default 2 MB cache turns
            # that into a read syscall per B-tree page.
            cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
            cursor.execute("PRAGMA temp_store=MEMORY")
            # Checkpoint the WAL every ~40 MB rather than 4 MB: the ingest rewrites the
            # same registry and rollup pages in every batch, and each checkpoint copies
            # a page once however often it changed since the last one.
            cursor.execute(f"PRAGMA wal_autocheckpoint={checkpoint_pages}")
        finally:
            cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A writer takes the write lock up front: a deferred transaction that reads first
        # cannot wait for the lock later (SQLite fails it at once with "database is
        # locked" once another writer has committed since its read).
        immediate = connection.get_execution_options().get(_WRITER_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@asynccontextmanager
async def write_transaction(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    """A transaction that will write: on SQLite it holds the write lock from the start.

    Use it for read-then-write work (the ingest, the sweeper) so that concurrent writers,
    such as two central instances on one SQLite file, queue up on the busy timeout
    instead of failing; while it runs, the store writer process lets it go first (see
    :mod:`~posfleet.store.write_turns`). On PostgreSQL it is an ordinary transaction.
    """
    async with writing(engine), engine.connect() as conn:
        await conn.execution_options(**{_WRITER_OPTION: True})
        async with conn.begin():
            yield conn


@contextmanager
def schema_change_transaction(connection: Connection) -> Iterator[None]:
    """One transaction for schema changes on a connection not yet in one.

    On SQLite, foreign keys are not enforced meanwhile, and checked before the commit.
    Alembic's batch mode rebuilds a table by copying it, dropping the original and
    renaming the copy; with enforcement on, dropping ``terminals`` would delete every
    row that references it (``ON DELETE CASCADE``): all samples, events and rollups.
    SQLite only changes that setting outside a transaction, so it is switched on the
    driver's connection before ``BEGIN`` and back after the end.
    """
    sqlite = connection.dialect.name == "sqlite"
    if sqlite:
        _driver_pragma(connection, "foreign_keys=OFF")
    try:
        with connection.begin():
            yield
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    table, rowid, parent, _ = broken[0]
                    raise ForeignKeyViolationError(
                        f"{len(broken)} rows would point nowhere, first {table} row {rowid} "
                        f"(no such {parent})"
                    )
    finally:
        if sqlite:
            _driver_pragma(connection, "foreign_keys=ON")


def _driver_pragma(connection: Connection, setting: str) -> None:
    # Straight to the driver: through SQLAlchemy, the statement would begin a transaction.
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(f"PRAGMA {setting}")
    finally:
        cursor.close()
