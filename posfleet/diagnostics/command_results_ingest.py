"""The ingest's ``cmd/result`` handler: a staff command's answer onto its record.

The ingest takes one handler per channel, and ``cmd/result`` carries the answers to
every downlink command: staff commands (recorded in ``terminal_commands``), the
firmware's ``firmware_cancel`` and the playbooks' steps (whose runner waits for them on
its own subscription). :class:`CommandResultHandler` stores the staff ones, then calls
each :data:`ResultConsumer` in the same transaction (a backup is stored when a
``backup_config`` answer arrives), and hands any other result to the handlers it was
given for them (the firmware's), so adding it loses nothing.

Handlers are pickled to the store writer process: frozen dataclasses holding
module-level functions only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import CommandResult
from posfleet.diagnostics.remote_commands import ResultConsumer, state_of_status
from posfleet.store.terminal_commands import get_command, record_result

log = logging.getLogger(__name__)


class ResultHandler(Protocol):
    """Another ``cmd/result`` handler (the ingest's ``ChannelHandler`` shape)."""

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: Any, /, *, now: datetime
    ) -> bool | str | None:
        """True stored, False duplicate, a text a dead letter, None not its business."""
        ...


@dataclass(frozen=True, slots=True)
class CommandResultHandler:
    """Stores staff commands' results; passes the others on to ``others`` in order."""

    consumers: tuple[ResultConsumer, ...] = ()
    others: tuple[ResultHandler, ...] = ()

    async def __call__(
        self, conn: AsyncConnection, terminal_id: str, payload: object, /, *, now: datetime
    ) -> bool | str | None:
        """Record ``payload`` (a :class:`CommandResult`) if it answers a staff command."""
        if not isinstance(payload, CommandResult):
            return f"cmd/result: expected a CommandResult, got {type(payload).__name__}"
        record = await get_command(conn, payload.id)
        if record is None:
            for handler in self.others:
                handled = await handler(conn, terminal_id, payload, now=now)
                if handled is not None:
                    return handled
            return None
        if record.terminal_id != terminal_id:
            return (
                f"cmd/result: {payload.id} was sent to terminal {record.terminal_id}, "
                f"not {terminal_id}"
            )
        stored = await record_result(
            conn,
            payload.id,
            state=state_of_status(payload.status),
            output=dict(payload.output),
            error=payload.error,
            finished_at=payload.ts,
        )
        if not stored:
            return False
        finished = await get_command(conn, payload.id)
        assert finished is not None  # updated just now, in this transaction
        for consumer in self.consumers:
            await _consume(consumer, conn, finished)
        return True


async def _consume(consumer: ResultConsumer, conn: AsyncConnection, record: Any) -> None:
    """Run one consumer in a savepoint: its failure must not lose the stored result."""
    try:
        async with conn.begin_nested():
            await consumer(conn, record)
    except OperationalError:
        raise  # a locked or lost database: the ingest retries the whole batch
    except Exception:
        log.exception("result consumer %s failed on command %s", consumer, record.id)
