"""The record of every command staff send to a terminal (table ``terminal_commands``).

The lifecycle is decided in :mod:`posfleet.diagnostics.remote_commands`; this module
only reads and writes rows, each update guarded by the state it expects, so two central
instances (or the sweeper racing a late result) never step back a final state.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.incidents import PlaybookRun
from posfleet.store.schema import playbook_runs, terminal_commands, terminals


class CommandState(StrEnum):
    """Where a staff command stands; the last four are final."""

    QUEUED = "queued"
    """Recorded; not with the terminal yet (it is offline, or the broker was away)."""
    SENT = "sent"
    """The broker has it and the terminal is online: its answer is on the way."""
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


FINAL_STATES = frozenset(
    {CommandState.DONE, CommandState.FAILED, CommandState.REJECTED, CommandState.EXPIRED}
)
PENDING_STATES = (CommandState.QUEUED, CommandState.SENT)


class CommandRecord(pydantic.BaseModel):
    """One staff command and its outcome, as pages, the API and the CLI show it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str
    terminal_id: str
    name: str
    args: dict[str, Any]
    reason: str
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    published_at: datetime | None = None
    """When the broker took it; None while it could not be published."""
    state: CommandState
    output: dict[str, Any] | None = None
    error: str | None = None
    finished_at: datetime | None = None
    case_id: int | None = None

    @property
    def final(self) -> bool:
        """True once the command has its outcome."""
        return self.state in FINAL_STATES


_c = terminal_commands.c
_COLUMNS = [column for column in terminal_commands.c]


def _record(row: sa.Row[Any]) -> CommandRecord:
    values = dict(row._mapping)
    values["args"] = dict(values["args"] or {})
    values["state"] = CommandState(values["state"])
    return CommandRecord.model_validate(values)


async def insert_command(conn: AsyncConnection, record: CommandRecord) -> None:
    """Store a newly issued command."""
    values = record.model_dump()
    # SQL NULL, not a JSON ``null``: "no answer yet" is tested with IS NULL.
    values["output"] = sa.null() if record.output is None else record.output
    await conn.execute(sa.insert(terminal_commands).values(**values))


async def get_command(conn: AsyncConnection, command_id: str) -> CommandRecord | None:
    """The command with this id, or None."""
    row = (await conn.execute(sa.select(*_COLUMNS).where(_c.id == command_id))).first()
    return _record(row) if row is not None else None


async def list_commands(
    conn: AsyncConnection, terminal_id: str, *, limit: int = 50
) -> list[CommandRecord]:
    """The terminal's newest ``limit`` commands, newest first."""
    rows = await conn.execute(
        sa.select(*_COLUMNS)
        .where(_c.terminal_id == terminal_id)
        .order_by(_c.issued_at.desc(), _c.id.desc())
        .limit(max(1, limit))
    )
    return [_record(row) for row in rows]


async def list_case_commands(conn: AsyncConnection, case_id: int) -> list[CommandRecord]:
    """The commands run for a case, oldest first."""
    rows = await conn.execute(
        sa.select(*_COLUMNS).where(_c.case_id == case_id).order_by(_c.issued_at, _c.id)
    )
    return [_record(row) for row in rows]


async def mark_published(
    conn: AsyncConnection, command_id: str, *, now: datetime, terminal_online: bool
) -> None:
    """The broker took the command: ``sent`` if the terminal is online, else still queued."""
    values: dict[str, Any] = {"published_at": now}
    if terminal_online:
        values["state"] = sa.case(
            (_c.state == CommandState.QUEUED.value, CommandState.SENT.value), else_=_c.state
        )
    await conn.execute(
        sa.update(terminal_commands)
        .where(_c.id == command_id, _c.published_at.is_(None))
        .values(**values)
    )


async def record_result(
    conn: AsyncConnection,
    command_id: str,
    *,
    state: CommandState,
    output: dict[str, Any],
    error: str | None,
    finished_at: datetime,
) -> bool:
    """Store the terminal's answer; False if this very answer is stored already.

    A terminal's answer replaces an ``expired`` the centre gave a command it had not heard
    back from in time (a slow log collection): what the terminal did is the better truth.
    """
    result = await conn.execute(
        sa.update(terminal_commands)
        .where(
            _c.id == command_id,
            sa.or_(
                _c.state.in_([s.value for s in PENDING_STATES]),
                sa.and_(_c.state == CommandState.EXPIRED.value, _c.output.is_(None)),
            ),
        )
        .values(state=state.value, output=output, error=error, finished_at=finished_at)
    )
    return result.rowcount == 1


async def expire_overdue(
    conn: AsyncConnection, *, queued_before: datetime, sent_before: datetime, now: datetime
) -> list[CommandRecord]:
    """End ``expired`` every queued command due before ``queued_before`` and every sent one
    due before ``sent_before`` (which allows a running command time to answer)."""
    overdue = sa.or_(
        sa.and_(_c.state == CommandState.QUEUED.value, _c.expires_at <= queued_before),
        sa.and_(_c.state == CommandState.SENT.value, _c.expires_at <= sent_before),
    )
    rows = list(await conn.execute(sa.select(*_COLUMNS).where(overdue).limit(500)))
    expired: list[CommandRecord] = []
    for row in rows:
        record = _record(row)
        error = (
            "no answer from the terminal before the command expired at "
            f"{record.expires_at.isoformat()}"
            + ("" if record.state is CommandState.SENT else "; it never came online to take it")
        )
        done = await conn.execute(
            sa.update(terminal_commands)
            .where(_c.id == record.id, _c.state == record.state.value)
            .values(state=CommandState.EXPIRED.value, error=error, finished_at=now)
        )
        if done.rowcount == 1:
            expired.append(
                record.model_copy(
                    update={"state": CommandState.EXPIRED, "error": error, "finished_at": now}
                )
            )
    return expired


async def unpublished(conn: AsyncConnection, *, now: datetime, limit: int) -> list[CommandRecord]:
    """Queued commands the broker never took and that are still valid, oldest first."""
    rows = await conn.execute(
        sa.select(*_COLUMNS)
        .where(
            _c.state == CommandState.QUEUED.value,
            _c.published_at.is_(None),
            _c.expires_at > now,
        )
        .order_by(_c.issued_at)
        .limit(limit)
    )
    return [_record(row) for row in rows]


async def mark_reconnected_sent(conn: AsyncConnection) -> int:
    """Queued, published commands whose terminal is back online: the broker delivers them
    from its session now, so they count as sent. Returns how many changed."""
    online = sa.select(terminals.c.terminal_id).where(terminals.c.online.is_(True))
    result = await conn.execute(
        sa.update(terminal_commands)
        .where(
            _c.state == CommandState.QUEUED.value,
            _c.published_at.is_not(None),
            _c.terminal_id.in_(online),
        )
        .values(state=CommandState.SENT.value)
    )
    return result.rowcount


async def list_terminal_playbook_runs(
    conn: AsyncConnection, terminal_id: str, *, limit: int = 10
) -> list[PlaybookRun]:
    """The terminal's newest playbook runs, newest first (with or without an incident)."""
    runs = playbook_runs.c
    rows = await conn.execute(
        sa.select(playbook_runs)
        .where(runs.terminal_id == terminal_id)
        .order_by(runs.started_at.desc(), runs.id.desc())
        .limit(max(1, limit))
    )
    return [PlaybookRun.model_validate(dict(row._mapping)) for row in rows]
