"""Storing one batch of raw MQTT messages: decode, dispatch by channel, dead-letter.

No broker here: the bridge feeds batches in, and tests can too. A message that does
not decode, or that its handler rejects, becomes a dead letter inside the same
transaction; the good messages around it are stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import Channel, Message, PayloadError, decode
from posfleet.store.dead_letters import record_dead_letter
from posfleet.store.terminals import apply_event, apply_health, apply_inventory, apply_state

log = logging.getLogger(__name__)


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


DEFAULT_HANDLERS: Mapping[Channel, ChannelHandler] = {
    Channel.STATE: apply_state,
    Channel.INVENTORY: apply_inventory,
    Channel.HEALTH: apply_health,
    Channel.EVENT: apply_event,
}
"""What the walking skeleton stores; ``cmd/result`` and ``fw/status`` join later."""


@dataclass(slots=True)
class BatchOutcome:
    """What happened to each message of a batch."""

    stored: list[Message] = field(default_factory=list)
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0


def is_transient(exc: BaseException) -> bool:
    """True for database failures worth retrying (lost connection, locked database).

    Those say nothing about the message: retry the batch instead of dead-lettering it.
    """
    # OSError: a refused or reset connection can surface unwrapped from the driver.
    if isinstance(exc, OperationalError | InterfaceError | OSError | TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


async def store_batch(
    conn: AsyncConnection,
    batch: Sequence[RawMessage],
    *,
    now: datetime,
    handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
) -> BatchOutcome:
    """Store ``batch`` on ``conn`` inside the caller's transaction.

    Raises only on transient database errors (see :func:`is_transient`), in which case
    the caller rolls back and retries the whole batch.
    """
    outcome = BatchOutcome()
    for raw in batch:
        try:
            message = decode(raw.topic, raw.payload)
        except PayloadError as exc:
            await _dead_letter(conn, raw, exc.reason, now)
            outcome.dead_lettered += 1
            continue
        handler = handlers.get(message.topic.channel)
        if handler is None:
            outcome.ignored += 1
            continue
        try:
            # A savepoint per message, so a rejected one leaves no half-written rows.
            async with conn.begin_nested():
                fresh = await handler(conn, message.topic.terminal_id, message.payload, now=now)
        # A message that trips a database constraint or a bug in a handler is bad input
        # all the same: keep it for inspection and carry on with the rest of the batch.
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("cannot store %s: %s", raw.topic, exc, exc_info=True)
            await _dead_letter(conn, raw, f"store: {_one_line(exc)}", now)
            outcome.dead_lettered += 1
            continue
        if fresh:
            outcome.stored.append(message)
        else:
            outcome.duplicates += 1
    return outcome


async def _dead_letter(conn: AsyncConnection, raw: RawMessage, error: str, now: datetime) -> None:
    log.info("dead letter on %s: %s", raw.topic[:256], error)
    await record_dead_letter(conn, raw.topic, raw.payload, error, now=now)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
