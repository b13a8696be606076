"""Store-and-forward outbox: every report is on disk before it is published.

Reports are written to SQLite (WAL, ``synchronous=FULL`` so a committed report survives
power loss) together with the sequence number they carry, in one transaction: ``seq``
therefore stays monotonic across crashes and restarts, and nothing that was given a
``seq`` is lost unless the size policy drops it, which is counted.

Size policy, when ``max_entries`` is reached: drop the oldest *health* report first
(the next one supersedes it); only when no health report is left drop the oldest
fault *event*. Both drops are counted and reported.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from posfleet.agent.errors import OutboxError
from posfleet.contract import Channel

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
    ('next_seq', 0), ('dropped_health', 0), ('dropped_events', 0);
"""


class EntryKind(StrEnum):
    """What the size policy needs to know about an entry."""

    HEALTH = "health"
    EVENT = "event"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One stored message waiting for its PUBACK."""

    id: int
    channel: Channel
    payload: bytes


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """Depth and drop counters, for health reporting and tests."""

    pending: int
    next_seq: int
    dropped_health: int
    dropped_events: int


class Outbox:
    """A bounded, crash-safe FIFO of encoded contract messages."""

    def __init__(self, path: Path, *, max_entries: int = 50_000, durable: bool = True) -> None:
        self.path = path
        self.max_entries = max_entries
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise OutboxError(f"cannot open outbox {path}: {exc}") from exc

    def close(self) -> None:
        """Close the database; pending entries stay on disk."""
        self._db.close()

    def append(self, channel: Channel, kind: EntryKind, encode: Callable[[int], bytes]) -> int:
        """Give the next ``seq`` to ``encode`` and store what it returns, atomically.

        Returns the ``seq`` used.
        """
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (seq,) = self._db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
                payload = encode(seq)
                self._db.execute(
                    "INSERT INTO outbox (channel, kind, payload) VALUES (?, ?, ?)",
                    (channel.value, kind.value, payload),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key='next_seq'", (seq + 1,))
                self._enforce_bound()
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise OutboxError(f"cannot write outbox {self.path}: {exc}") from exc
        return int(seq)

    def _enforce_bound(self) -> None:
        (count,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        excess = count - self.max_entries
        if excess <= 0:
            return
        for kind, counter in (
            (EntryKind.HEALTH, "dropped_health"),
            (EntryKind.EVENT, "dropped_events"),
        ):
            rows = self._db.execute(
                "SELECT id FROM outbox WHERE kind = ? ORDER BY id LIMIT ?", (kind.value, excess)
            ).fetchall()
            if rows:
                self._db.executemany("DELETE FROM outbox WHERE id = ?", rows)
                self._db.execute(
                    "UPDATE meta SET value = value + ? WHERE key = ?", (len(rows), counter)
                )
                excess -= len(rows)
            if excess <= 0:
                return

    def peek(self, limit: int, after_id: int = 0) -> list[OutboxEntry]:
        """The oldest ``limit`` entries with an id above ``after_id``, in order."""
        rows = self._db.execute(
            "SELECT id, channel, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
            (after_id, limit),
        ).fetchall()
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
        )
