"""Turns at SQLite's one write lock, so the store writer process cannot starve the rest.

The store writer commits batch after batch; between two of its transactions the write
lock is free for a moment only. Any other writer of the file (the service's incident
recorder, housekeeping, a staff action) waits in SQLite's busy handler, which polls
with sleeps of up to 100 ms and so mostly misses those moments: a fault's incident
could wait seconds behind the health backlog it was meant to overtake.

So every write transaction on a SQLite file holds a shared ``flock`` on a small file
beside the database (``<db>-turns``) while it runs, and the store writer, before each
batch, takes that lock exclusively for an instant: when another writer holds it, the
batch waits until that writer has committed. The writer's own transactions hold the
shared lock too, which never conflicts: it asks for its turn only between them. Only
the file's writers on this machine take part, which is where a SQLite file lives. The
writer never asks for its turn inside a transaction of its own (it would wait for
itself).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

SUFFIX = "-turns"


class _TurnFile:
    """One process's handle on a database's turn file, shared by its transactions.

    ``flock`` belongs to the open file, not to a caller, so the first of this process's
    concurrent transactions takes the shared lock and the last to finish releases it.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self._turn_fd: int | None = None
        """A second open file for :meth:`wait_for_turn`: on the first, asking for the
        exclusive lock would only convert this process's own shared one."""
        self._holders = 0
        self._guard = threading.Lock()

    async def hold(self) -> None:
        with self._guard:
            self._holders += 1
            if self._holders > 1:
                return
            try:
                fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
        # The store writer is taking its turn this instant: wait it out off the loop.
        acquiring = asyncio.ensure_future(asyncio.to_thread(fcntl.flock, self._fd, fcntl.LOCK_SH))
        try:
            await asyncio.shield(acquiring)
        except BaseException:
            # Cancelled meanwhile: the thread still takes the lock; give it back once it
            # has, or the writer would wait for this transaction forever.
            acquiring.add_done_callback(lambda _done: self.release())
            raise

    def release(self) -> None:
        with self._guard:
            self._holders -= 1
            if self._holders == 0:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    async def wait_for_turn(self) -> None:
        if self._turn_fd is None:
            self._turn_fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        fd = self._turn_fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        fcntl.flock(fd, fcntl.LOCK_UN)


_files: dict[tuple[int, str], _TurnFile] = {}
_files_guard = threading.Lock()


def _turn_file(engine: AsyncEngine) -> _TurnFile | None:
    """The engine's turn file; None for PostgreSQL and in-memory SQLite."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    if database.startswith("file:"):
        return None
    key = (os.getpid(), str(Path(database).resolve()))
    with _files_guard:
        found = _files.get(key)
        if found is None:
            found = _files[key] = _TurnFile(Path(key[1] + SUFFIX))
        return found


@asynccontextmanager
async def writing(engine: AsyncEngine) -> AsyncIterator[None]:
    """Hold the shared turn lock around one write transaction (SQLite files only)."""
    turns = _turn_file(engine)
    if turns is None:
        yield
        return
    await turns.hold()
    try:
        yield
    finally:
        turns.release()


async def give_way(engine: AsyncEngine) -> None:
    """Before the store writer's next batch: wait until no other write is under way."""
    turns = _turn_file(engine)
    if turns is not None:
        await turns.wait_for_turn()
