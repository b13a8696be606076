"""Storing one batch of raw MQTT messages: decode, dispatch by channel, dead-letter.

No broker here: the bridge feeds batches in, and tests can too. The fast path stores a
whole batch with a handful of statements (health and events in bulk through
:func:`~posfleet.store.record_reports`). If that fails for anything but a transient
database error, it is rolled back to its savepoint and the batch is stored again one
message per savepoint, so the message at fault becomes a dead letter and the good ones
around it are stored. Bad JSON, wrong types, unknown topics and oversize payloads never
reach the database: they are dead letters from the start.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

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
from posfleet.store.report_batch import Report, record_reports
from posfleet.store.terminals import apply_inventory, apply_state, hardware_owner

log = logging.getLogger(__name__)

# PostgreSQL serialization failure and deadlock: the transaction may simply be retried.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


@dataclass(frozen=True, slots=True)
class RawMessage:
    """A message as it came off the wire, with what is needed to acknowledge it."""

    topic: str
    payload: bytes
    mid: int = 0
    qos: int = 0
    retained: bool = False
    session: int = 0
    """Which broker connection delivered it: a mid is only meaningful on that one."""


class ChannelHandler(Protocol):
    """Stores one decoded payload; returns False if it was already stored (a duplicate)."""

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: Any, /, *, now: datetime
    ) -> bool:
        """Apply ``payload`` from ``terminal_id``."""
        ...


DEFAULT_HANDLERS: Mapping[Channel, ChannelHandler] = MappingProxyType({})
"""Extra per-message handlers, by channel.

``state``, ``inventory``, ``health`` and ``event`` are stored by the bridge itself; a
handler given for one of those replaces the built-in storage of that channel. Channels
with neither (``cmd/result`` and ``fw/status`` until their owners add handlers) are
acknowledged and counted as ignored.
"""


@dataclass(slots=True)
class BatchOutcome:
    """What happened to each message of a batch."""

    stored: list[Message] = field(default_factory=list)
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0


class _Fate(enum.Enum):
    STORED = enum.auto()
    DUPLICATE = enum.auto()
    IGNORED = enum.auto()


def is_transient(exc: BaseException) -> bool:
    """True for database failures worth retrying (lost connection, locked database).

    Those say nothing about the message: retry the batch instead of dead-lettering it.
    """
    # OSError: a refused or reset connection can surface unwrapped from the driver.
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
    return False


@dataclass(slots=True)
class DecodedBatch:
    """A batch after validation: what decoded, and what was rejected with its reason."""

    raws: list[RawMessage] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    rejected: list[tuple[RawMessage, str]] = field(default_factory=list)


def decode_batch(batch: Sequence[RawMessage]) -> DecodedBatch:
    """Validate every message of ``batch`` (pure CPU; no database)."""
    decoded = DecodedBatch()
    for raw in batch:
        try:
            message = decode(raw.topic, raw.payload)
        except PayloadError as exc:
            decoded.rejected.append((raw, exc.reason))
            continue
        decoded.raws.append(raw)
        decoded.messages.append(message)
    return decoded


async def store_batch(
    conn: AsyncConnection,
    batch: Sequence[RawMessage],
    *,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
) -> BatchOutcome:
    """Validate and store ``batch`` on ``conn`` inside the caller's transaction.

    Raises only on transient database errors (see :func:`is_transient`), in which case
    the caller rolls back and retries the whole batch.
    """
    return await store_decoded(conn, decode_batch(batch), now=now, handlers=handlers)


async def store_decoded(
    conn: AsyncConnection,
    decoded: DecodedBatch,
    *,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
) -> BatchOutcome:
    """Store a validated batch (see :func:`store_batch`)."""
    outcome = BatchOutcome()
    rejected = list(decoded.rejected)
    fates: list[_Fate | str] | None
    try:
        async with conn.begin_nested():
            fates = await _store(conn, decoded.messages, now, handlers)
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("a batch of %d failed, storing it one by one: %s", len(decoded.raws), exc)
        fates = None
    if fates is None:
        fates = [await _store_alone(conn, message, now, handlers) for message in decoded.messages]

    for raw, message, fate in zip(decoded.raws, decoded.messages, fates, strict=True):
        if fate is _Fate.STORED:
            outcome.stored.append(message)
        elif fate is _Fate.DUPLICATE:
            outcome.duplicates += 1
        elif fate is _Fate.IGNORED:
            outcome.ignored += 1
        else:
            rejected.append((raw, str(fate)))
    await _dead_letter(conn, rejected, now)
    outcome.dead_lettered = len(rejected)
    return outcome


async def _store_alone(
    conn: AsyncConnection,
    message: Message,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler],
) -> _Fate | str:
    try:
        # A savepoint per message, so a rejected one leaves no half-written rows.
        async with conn.begin_nested():
            return (await _store(conn, [message], now, handlers))[0]
    # A message that trips a database constraint or a bug in a handler is bad input
    # all the same: keep it for inspection and carry on with the rest of the batch.
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("cannot store %s: %s", message.topic, exc, exc_info=True)
        return f"store: {_one_line(exc)}"


async def _store(
    conn: AsyncConnection,
    messages: Sequence[Message],
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler],
) -> list[_Fate | str]:
    """Store ``messages``; one fate per message, a string being a dead-letter reason."""
    fates: list[_Fate | str] = [_Fate.IGNORED] * len(messages)
    reports: list[Report] = []
    report_positions: list[int] = []
    for i, message in enumerate(messages):
        terminal_id, payload = message.topic.terminal_id, message.payload
        handler = handlers.get(message.topic.channel)
        if handler is not None:
            fates[i] = _fate(await handler(conn, terminal_id, payload, now=now))
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


def _fate(fresh: bool) -> _Fate:
    return _Fate.STORED if fresh else _Fate.DUPLICATE


async def _dead_letter(
    conn: AsyncConnection, rejected: Sequence[tuple[RawMessage, str]], now: datetime
) -> None:
    # A terminal repeating one bad message: one statement per kind, not per copy.
    kinds: dict[str, tuple[RawMessage, str, int]] = {}
    for raw, error in rejected:
        key = fingerprint(raw.topic, raw.payload, error)
        _, _, count = kinds.get(key, (raw, error, 0))
        kinds[key] = (raw, error, count + 1)
    for raw, error, count in kinds.values():
        log.info("dead letter on %s (x%d): %s", raw.topic[:256], count, error[:512])
        await record_dead_letter(conn, raw.topic, raw.payload, error, now=now, count=count)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
