"""Storing one batch of raw MQTT messages: validate, dispatch by channel, dead-letter.

Two steps, the only path every batch takes: :func:`prepare_batch` validates each
message once, on the ingest's event loop, and builds a :class:`StoreRequest` of plain
samples and models; :func:`store_prepared` stores that request in a transaction, in
the store writer process (or on the loop, for the inline writer). The messages the
first step decoded are what the ingest's hook and sinks receive: nothing is decoded
twice. No broker here: tests can feed batches in (:func:`store_batch` runs both steps).

The fast path stores a whole batch with a handful of statements (health and events in
bulk through :func:`~posfleet.store.record_reports`). If that fails for anything but a
transient database error, it is rolled back to its savepoint and the batch is stored
again one message per savepoint, so the message at fault becomes a dead letter and the
good ones around it are stored. Bad JSON, wrong types, unknown topics and oversize
payloads never reach the database: they are dead letters from the start.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.broker_bridge.errors import TransientStoreError
from posfleet.contract import (
    Channel,
    FaultEvent,
    HealthReport,
    Inventory,
    Message,
    PayloadError,
    State,
    decode,
)
from posfleet.store.dead_letters import fingerprint, record_dead_letter
from posfleet.store.report_batch import Report, Sample, SampledMessages, Stored, record_reports
from posfleet.store.terminals import apply_inventory, apply_state, hardware_owner

log = logging.getLogger(__name__)

# PostgreSQL serialization failure and deadlock: the transaction may simply be retried.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
# SQLite errors that pass: a lock held by another writer, a full or unavailable disk.
_SQLITE_TRANSIENT = ("locked", "busy", "disk i/o", "unable to open", "database or disk is full")


class RawMessage(NamedTuple):
    """A message as it came off the wire, with what is needed to acknowledge it.

    A tuple because one is made per message on paho's thread: a frozen dataclass costs
    several times as much to build.
    """

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retained: bool = False
    session: int = 0
    """Which broker connection delivered it: a mid is only meaningful on that one."""


class ChannelHandler(Protocol):
    """Stores one decoded payload; returns False if it was already stored (a duplicate).

    A text instead is the reason the message belongs nowhere (a status for an unknown
    action, say): it becomes a dead letter with that reason and changes nothing. None
    means the message is not the handler's business: acknowledged, counted as ignored.
    """

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: Any, /, *, now: datetime
    ) -> bool | str | None:
        """Apply ``payload`` from ``terminal_id``."""
        ...


DEFAULT_HANDLERS: Mapping[Channel, ChannelHandler] = MappingProxyType({})
"""Extra per-message handlers, by channel.

``state``, ``inventory``, ``health`` and ``event`` are stored by the bridge itself; a
handler given for one of those replaces the built-in storage of that channel. Channels
with neither (``cmd/result``; ``fw/status`` unless given the firmware handler, which
the central service does) are acknowledged and counted as ignored.
"""


@dataclass(slots=True)
class BatchOutcome:
    """What happened to each message of a batch."""

    stored: SampledMessages = field(default_factory=lambda: SampledMessages([], []))
    """The messages stored for the first time, in batch order, with their samples."""
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    stored_positions: list[int] = field(default_factory=list)
    """Where each of ``stored`` was in the batch (index into the raw messages)."""


class Fate(enum.Enum):
    """What became of one valid message (dead letters are told by their reason instead)."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"


def is_transient(exc: BaseException) -> bool:
    """True for database failures worth retrying (lost connection, locked database).

    Those say nothing about the message: retry the batch instead of dead-lettering it.
    """
    if isinstance(exc, OperationalError) and isinstance(exc.orig, sqlite3.OperationalError):
        # SQLite reports a malformed statement with the same class as a locked file.
        return any(word in str(exc.orig).lower() for word in _SQLITE_TRANSIENT)
    # OSError: a refused or reset connection can surface unwrapped from the driver.
    if isinstance(
        exc, TransientStoreError | OperationalError | InterfaceError | OSError | TimeoutError
    ):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    return False


StoreItem = Sample | Message
"""One validated message as the store takes it: health as a :class:`Sample`, the rest whole."""


@dataclass(slots=True)
class StoreRequest:
    """What storing a validated batch needs: health reports as samples, the rest whole.

    Plain values and models only, so that it crosses to the store writer process as it is.
    """

    items: list[StoreItem] = field(default_factory=list)
    wire: list[tuple[str, bytes]] = field(default_factory=list)
    """Each item's topic and payload as received, for a dead letter should it fail."""
    rejected: list[tuple[str, bytes, str]] = field(default_factory=list)
    """Messages that failed validation: topic, payload and reason."""


@dataclass(frozen=True, slots=True)
class StoreSummary:
    """What storing a :class:`StoreRequest` did: one fate per item, and the dead letters."""

    fates: list[Fate | str]
    """Per item: a :class:`Fate`, or the reason it became a dead letter."""
    dead_lettered: int


@dataclass(slots=True)
class PreparedBatch:
    """A batch after validation: its messages, decoded once, and what the store needs."""

    messages: list[Message] = field(default_factory=list)
    """The messages that validated, in batch order."""
    positions: list[int] = field(default_factory=list)
    """Where each of ``messages`` was in the batch."""
    request: StoreRequest = field(default_factory=StoreRequest)
    cpu_seconds: float = 0.0
    """CPU time of this thread spent decoding it (not the waits between slices)."""

    def outcome(self, summary: StoreSummary) -> BatchOutcome:
        """What became of this batch once stored as ``summary`` says."""
        outcome = BatchOutcome(dead_lettered=summary.dead_lettered)
        stored: list[Message] = []
        samples: list[Sample | None] = []
        for message, item, position, fate in zip(
            self.messages, self.request.items, self.positions, summary.fates, strict=True
        ):
            if fate is Fate.STORED:
                stored.append(message)
                samples.append(item if isinstance(item, Sample) else None)
                outcome.stored_positions.append(position)
            elif fate is Fate.DUPLICATE:
                outcome.duplicates += 1
            elif fate is Fate.IGNORED:
                outcome.ignored += 1
        outcome.stored = SampledMessages(stored, samples)
        return outcome


DECODE_SLICE = 64
"""Messages validated between two yields to the event loop in :func:`prepare_batch`."""


async def prepare_batch(
    batch: Sequence[RawMessage],
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
    *,
    pause: Callable[[], Awaitable[None]] | None = None,
) -> PreparedBatch:
    """Validate every message of ``batch`` once and build its :class:`StoreRequest`.

    Pure CPU, no database, done in slices of :data:`DECODE_SLICE`, awaiting ``pause``
    between them (by default one turn of the event loop; the bulk lane waits for the
    fast lane's batch too), so that the broker's acknowledgements and a fast-lane batch are not held
    up behind a large bulk batch. Health reports become samples unless a handler takes
    them; bad JSON, wrong types, unknown topics and oversize payloads are rejected here
    with their reason and become dead letters when the batch is stored.
    """
    prepared = PreparedBatch()
    request = prepared.request
    sample_health = Channel.HEALTH not in handlers
    for start in range(0, len(batch), DECODE_SLICE):
        started = time.thread_time()
        for position, raw in enumerate(batch[start : start + DECODE_SLICE], start):
            try:
                message = decode(raw.topic, raw.payload)
            except PayloadError as exc:
                request.rejected.append((raw.topic, raw.payload, exc.reason))
                continue
            prepared.messages.append(message)
            prepared.positions.append(position)
            payload = message.payload
            if sample_health and isinstance(payload, HealthReport):
                request.items.append(Sample.of(message.topic.terminal_id, payload))
            else:
                request.items.append(message)
            request.wire.append((raw.topic, raw.payload))
        prepared.cpu_seconds += time.thread_time() - started
        if start + DECODE_SLICE < len(batch):
            await (pause() if pause is not None else asyncio.sleep(0))
    return prepared


async def store_batch(
    conn: AsyncConnection,
    batch: Sequence[RawMessage],
    *,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
) -> BatchOutcome:
    """Validate and store ``batch`` on ``conn`` inside the caller's transaction.

    :func:`prepare_batch` then :func:`store_prepared`, the two steps the ingest runs on
    either side of the store writer's pipe, for callers without a broker. Raises only
    on transient database errors (see :func:`is_transient`), in which case the caller
    rolls back and retries the whole batch.
    """
    prepared = await prepare_batch(batch, handlers)
    summary = await store_prepared(conn, prepared.request, now=now, handlers=handlers)
    return prepared.outcome(summary)


async def store_prepared(
    conn: AsyncConnection,
    request: StoreRequest,
    *,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
) -> StoreSummary:
    """Store ``request`` in the caller's transaction and record its dead letters.

    Raises only on transient database errors (see :func:`is_transient`).
    """
    fates: list[Fate | str] | None
    try:
        async with conn.begin_nested():
            fates = await _store(conn, request.items, now, handlers)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("a batch of %d failed, storing it one by one: %s", len(request.items), exc)
        fates = None
    if fates is None:
        fates = [await _store_alone(conn, item, now, handlers) for item in request.items]
    rejected = list(request.rejected)
    for (topic, payload), fate in zip(request.wire, fates, strict=True):
        if isinstance(fate, str):
            rejected.append((topic, payload, fate))
    await _dead_letter(conn, rejected, now)
    return StoreSummary(fates, len(rejected))


async def _store_alone(
    conn: AsyncConnection,
    item: StoreItem,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler],
) -> Fate | str:
    try:
        # A savepoint per message, so a rejected one leaves no half-written rows.
        async with conn.begin_nested():
            return (await _store(conn, [item], now, handlers))[0]
    # A message that trips a database constraint or a bug in a handler is bad input
    # all the same: keep it for inspection and carry on with the rest of the batch.
    except Exception as exc:
        if is_transient(exc):
            raise
        where = item.terminal_id if isinstance(item, Sample) else item.topic
        log.warning("cannot store a message of %s: %s", where, exc, exc_info=True)
        return f"store: {_one_line(exc)}"


async def _store(
    conn: AsyncConnection,
    items: Sequence[StoreItem],
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler],
) -> list[Fate | str]:
    """Store ``items``; one fate per item, a string being a dead-letter reason."""
    fates: list[Fate | str] = [Fate.IGNORED] * len(items)
    reports: list[Stored] = []
    report_positions: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, Sample):
            reports.append(item)
            report_positions.append(i)
            continue
        terminal_id, payload = item.topic.terminal_id, item.payload
        handler = handlers.get(item.topic.channel)
        if handler is not None:
            handled = await handler(conn, terminal_id, payload, now=now)
            if handled is not None:
                fates[i] = handled if isinstance(handled, str) else _fate(handled)
        elif isinstance(payload, HealthReport | FaultEvent):
            reports.append(Report(terminal_id, payload))
            report_positions.append(i)
        elif isinstance(payload, State):
            fates[i] = _fate(await apply_state(conn, terminal_id, payload, now=now))
        elif isinstance(payload, Inventory):
            owner = await hardware_owner(
                conn, payload.model, payload.serial, other_than=terminal_id
            )
            if owner is not None:
                fates[i] = (
                    f"identity: {payload.model} serial {payload.serial!r} belongs to online "
                    f"terminal {owner!r}; {terminal_id!r} may be publishing under its id"
                )
            else:
                fates[i] = _fate(await apply_inventory(conn, terminal_id, payload, now=now))
    if reports:
        fresh = await record_reports(conn, reports, now=now)
        for i, is_new in zip(report_positions, fresh, strict=True):
            fates[i] = _fate(is_new)
    return fates


def _fate(fresh: bool) -> Fate:
    return Fate.STORED if fresh else Fate.DUPLICATE


async def _dead_letter(
    conn: AsyncConnection, rejected: Sequence[tuple[str, bytes, str]], now: datetime
) -> None:
    # A terminal repeating one bad message: one statement per kind, not per copy.
    kinds: dict[str, tuple[str, bytes, str, int]] = {}
    for topic, payload, error in rejected:
        key = fingerprint(topic, payload, error)
        count = kinds[key][3] if key in kinds else 0
        kinds[key] = (topic, payload, error, count + 1)
    for topic, payload, error, count in kinds.values():
        log.info("dead letter on %s (x%d): %s", topic[:256], count, error[:512])
        await record_dead_letter(conn, topic, payload, error, now=now, count=count)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
