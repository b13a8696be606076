"""Store-and-forward outbox: every message is on disk before it is published.

Reports are written to SQLite (WAL, ``synchronous=FULL`` so a committed report survives
power loss) together with the sequence number they carry, in one transaction: ``seq``
therefore stays monotonic across crashes and restarts, and nothing that was given a
``seq`` is lost unless the size policy drops it, which is counted. An entry is deleted
only after the broker acknowledged it, so a message published but not acknowledged
before a crash is published again after the restart (the centre is idempotent on
``(terminal, seq)``, which makes that duplicate harmless).

Size policy, when ``max_entries`` is reached: drop the oldest *health* report first (the
next one supersedes it), then the oldest *command result*, and only when nothing else is
left the oldest fault *event*. Every drop is counted in :class:`OutboxStats`.

The same database remembers the remote commands the agent saw (id and result, a bounded
history), so a command redelivered after a reconnect or a restart is answered from there
and never run twice; the result and its outbox entry are written in one transaction.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from posfleet.agent.errors import OutboxError
from posfleet.contract import Channel

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox (kind, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES
    ('next_seq', 0), ('dropped_health', 0), ('dropped_events', 0), ('dropped_results', 0);
CREATE TABLE IF NOT EXISTS commands (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    result BLOB
);
"""

DEFAULT_COMMAND_HISTORY = 1000
"""Command ids remembered for idempotency; far more than a terminal gets between restarts."""


class EntryKind(StrEnum):
    """What the size policy needs to know about an entry."""

    HEALTH = "health"
    EVENT = "event"
    RESULT = "result"


_DROP_ORDER = (
    (EntryKind.HEALTH, "dropped_health"),
    (EntryKind.RESULT, "dropped_results"),
    (EntryKind.EVENT, "dropped_events"),
)


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One stored message waiting for its PUBACK."""

    id: int
    channel: Channel
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth and drop counters, for status reporting and tests."""

    pending: int
    next_seq: int
    dropped_health: int
    dropped_events: int
    dropped_results: int


class CommandState(StrEnum):
    """Where a command id stands in the history."""

    NEW = "new"
    """Never seen: it is recorded now and must be run."""
    INTERRUPTED = "interrupted"
    """Seen and started before a crash or restart, never finished: do not run it again."""
    DONE = "done"
    """Finished: its stored result is the answer."""


@dataclass(frozen=True, slots=True)
class CommandClaim:
    """The answer of :meth:`Outbox.claim_command`."""

    state: CommandState
    result: bytes | None = None


class Outbox:
    """A bounded, crash-safe FIFO of encoded contract messages, plus the command history."""

    def __init__(
        self,
        path: Path,
        *,
        max_entries: int = 50_000,
        durable: bool = True,
        command_history: int = DEFAULT_COMMAND_HISTORY,
    ) -> None:
        self.path = path
        self.max_entries = max_entries
        self.command_history = command_history
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            # The outbox is small and read front to back: a 256 KiB page cache instead of
            # SQLite's 2 MiB default keeps the agent's resident memory down on a terminal.
            self._db.execute("PRAGMA cache_size=-256")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database; pending entries stay on disk."""
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc

    def append(self, channel: Channel, kind: EntryKind, encode: Callable[[int], bytes]) -> int:
        """Give the next ``seq`` to ``encode`` and store what it returns, atomically.

        For reports and events (the messages that carry a ``seq``). Returns the ``seq``.
        """
        with self._transaction() as db:
            (seq,) = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
            payload = encode(seq)
            self._insert(db, channel, kind, payload)
            db.execute("UPDATE meta SET value = ? WHERE key='next_seq'", (seq + 1,))
        return int(seq)

    def append_plain(self, channel: Channel, kind: EntryKind, payload: bytes) -> None:
        """Store a message that carries no ``seq`` (a command result): no seq is used up."""
        with self._transaction() as db:
            self._insert(db, channel, kind, payload)

    def _insert(
        self, db: sqlite3.Connection, channel: Channel, kind: EntryKind, payload: bytes
    ) -> None:
        db.execute(
            "INSERT INTO outbox (channel, kind, payload) VALUES (?, ?, ?)",
            (channel.value, kind.value, payload),
        )
        self._enforce_bound(db)

    def _enforce_bound(self, db: sqlite3.Connection) -> None:
        (count,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = count - self.max_entries
        for kind, counter in _DROP_ORDER:
            if excess <= 0:
                return
            rows = db.execute(
                "SELECT id FROM outbox WHERE kind = ? ORDER BY id LIMIT ?", (kind.value, excess)
            ).fetchall()
            if rows:
                db.executemany("DELETE FROM outbox WHERE id = ?", rows)
                db.execute("UPDATE meta SET value = value + ? WHERE key = ?", (len(rows), counter))
                log.warning(
                    "outbox full (%d entries): dropped the %d oldest %s message(s)",
                    self.max_entries,
                    len(rows),
                    kind.value,
                )
                excess -= len(rows)

    def peek(self, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        """The oldest ``limit`` entries with an id above ``after_id``, in order."""
        try:
            rows = self._db.execute(
                "SELECT id, channel, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit),
            ).fetchall()
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot read outbox {self.path}: {exc}") from exc
        return [OutboxEntry(int(r[0]), Channel(r[1]), bytes(r[2])) for r in rows]

    def remove(self, entry_id: int) -> None:
        """Forget an entry once the broker acknowledged it."""
        try:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (entry_id,))
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc

    def stats(self) -> OutboxStats:
        """Current depth and counters."""
        (pending,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        return OutboxStats(
            pending=int(pending),
            next_seq=int(meta["next_seq"]),
            dropped_health=int(meta["dropped_health"]),
            dropped_events=int(meta["dropped_events"]),
            dropped_results=int(meta["dropped_results"]),
        )

    # -- command history ------------------------------------------------------------------

    def claim_command(self, command_id: str) -> CommandClaim:
        """Record ``command_id`` as started unless it was seen before; say where it stands."""
        with self._transaction() as db:
            row = db.execute("SELECT result FROM commands WHERE id = ?", (command_id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO commands (id, received_at) VALUES (?, ?)",
                    (command_id, time.time()),
                )
                # Keep the history bounded: forget the oldest ids beyond the limit.
                db.execute(
                    "DELETE FROM commands WHERE n <= (SELECT MAX(n) FROM commands) - ?",
                    (self.command_history,),
                )
                return CommandClaim(CommandState.NEW)
        if row[0] is None:
            return CommandClaim(CommandState.INTERRUPTED)
        return CommandClaim(CommandState.DONE, bytes(row[0]))

    def interrupted_commands(self) -> list[str]:
        """Ids of commands started but never finished (the agent stopped while they ran)."""
        rows = self._db.execute(
            "SELECT id FROM commands WHERE result IS NULL ORDER BY n"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def finish_command(self, command_id: str, result: bytes) -> None:
        """Store a command's result and queue it for publishing, in one transaction."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO commands (id, received_at, result) VALUES (?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET result = excluded.result",
                (command_id, time.time(), result),
            )
            self._insert(db, Channel.CMD_RESULT, EntryKind.RESULT, result)
