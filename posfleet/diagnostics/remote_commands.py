"""Staff commands to one terminal: record, publish, and follow them to a final state.

A command is recorded first (who, when, why, the arguments) and written to the audit
log, then published on the terminal's ``cmd`` topic with QoS 1. The agent's MQTT session
is persistent, so the broker keeps a command for an offline terminal and delivers it at
reconnect; the agent itself answers ``expired`` for one that arrives after its
``expires_at``. The record therefore says ``queued`` while the terminal cannot have it
yet and ``sent`` once it can; the terminal's ``cmd/result`` ends it
(:mod:`posfleet.diagnostics.command_results_ingest`), and the
:class:`~posfleet.diagnostics.command_sweeper.CommandSweeper` ends ``expired`` every
command nobody answered in time and publishes again the ones the broker never took.
Nothing is lost silently: every command reaches a final state a person can read.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.contract import Channel, Command, CommandStatus, utcnow
from posfleet.diagnostics.errors import CommandRequestError, UnknownTerminalError
from posfleet.store.accounts import record_audit
from posfleet.store.engine import write_transaction
from posfleet.store.terminal_commands import (
    FINAL_STATES,
    CommandRecord,
    CommandState,
    insert_command,
    mark_published,
)
from posfleet.store.terminal_commands import get_command as _get_command
from posfleet.store.terminal_commands import list_commands as _list_commands
from posfleet.store.terminals import get_terminal

log = logging.getLogger(__name__)

__all__ = [
    "FINAL_STATES",
    "STAFF_COMMANDS",
    "CommandKind",
    "CommandRecord",
    "CommandState",
    "ResultConsumer",
    "get_command",
    "issue_command",
    "list_commands",
    "publish_command",
    "state_of_status",
]

MIN_EXPIRY = timedelta(seconds=5)
MAX_EXPIRY = timedelta(days=7)
"""The agent's broker session outlives an offline week; a command may wait that long."""
MAX_REASON_CHARS = 2000
MAX_ARGS_BYTES = 16 * 1024
PUBLISH_TIMEOUT_S = 5.0
"""Longest issuing waits for the broker to take a command (a person is waiting)."""


@dataclass(frozen=True, slots=True)
class CommandKind:
    """A command staff may send, as the agent's whitelist names it."""

    name: str
    disruptive: bool = False
    """It interrupts the terminal (a reboot) or changes it: a reason is required."""


STAFF_COMMANDS: Mapping[str, CommandKind] = {
    kind.name: kind
    for kind in (
        CommandKind("print_test"),
        CommandKind("card_reader_test"),
        CommandKind("host_ping"),
        CommandKind("self_test"),
        CommandKind("collect_logs"),
        CommandKind("sync_clock"),
        CommandKind("read_counters"),
        CommandKind("read_health"),
        CommandKind("print_line"),
        CommandKind("backup_config"),
        CommandKind("reboot", disruptive=True),
        CommandKind("restore_config", disruptive=True),
    )
}
"""Every command of the agent's whitelist that a person may send (``firmware_cancel``
belongs to the firmware service alone). The agent validates the arguments itself."""


ResultConsumer = Callable[[AsyncConnection, CommandRecord], Awaitable[None]]
"""Called in the ingest's transaction once a staff command's result is stored (a
module-level async function: the ingest's handlers are pickled to its writer process)."""


def state_of_status(status: CommandStatus) -> CommandState:
    """The record's final state for the terminal's answer."""
    return {
        CommandStatus.OK: CommandState.DONE,
        CommandStatus.FAILED: CommandState.FAILED,
        CommandStatus.REJECTED: CommandState.REJECTED,
        CommandStatus.EXPIRED: CommandState.EXPIRED,
    }[status]


def new_staff_command_id() -> str:
    """A command id unique across restarts and instances (``cmd-<16 hex>``)."""
    return f"cmd-{secrets.token_hex(8)}"


def _check_request(
    name: str, args: Mapping[str, Any], reason: str, expires_in: timedelta, issued_by: str
) -> None:
    kind = STAFF_COMMANDS.get(name)
    if kind is None:
        known = ", ".join(sorted(STAFF_COMMANDS))
        raise CommandRequestError("name", f"no command {name!r}; staff may send: {known}")
    if not isinstance(args, Mapping):
        raise CommandRequestError("args", "args must be an object of argument names to values")
    try:
        size = len(json.dumps(dict(args)))
    except (TypeError, ValueError):
        raise CommandRequestError("args", "args must be plain JSON values") from None
    if size > MAX_ARGS_BYTES:
        raise CommandRequestError("args", f"args may take at most {MAX_ARGS_BYTES} bytes as JSON")
    if len(reason) > MAX_REASON_CHARS:
        raise CommandRequestError("reason", f"the reason may be {MAX_REASON_CHARS} characters")
    if kind.disruptive and not reason.strip():
        raise CommandRequestError("reason", f"{name} interrupts the terminal: give a reason")
    if not MIN_EXPIRY <= expires_in <= MAX_EXPIRY:
        raise CommandRequestError(
            "expires_in_s",
            f"a command may wait {int(MIN_EXPIRY.total_seconds())} s to "
            f"{int(MAX_EXPIRY.total_seconds())} s for its terminal",
        )
    if not 1 <= len(issued_by) <= 128:
        raise CommandRequestError("issued_by", "who issues it: 1 to 128 characters")


async def issue_command(
    engine: AsyncEngine,
    publisher: Publisher | None,
    terminal_id: str,
    name: str,
    args: dict[str, Any],
    *,
    issued_by: str,
    reason: str,
    expires_in: timedelta = timedelta(hours=1),
    case_id: int | None = None,
) -> CommandRecord:
    """Record a command for ``terminal_id``, audit it, and publish it.

    Raises :class:`CommandRequestError` for a request that cannot be sent and
    :class:`UnknownTerminalError` for a terminal that never reported. Otherwise the
    command is recorded whatever the broker does: a broker that is away (or no
    ``publisher`` at all) leaves it ``queued`` and the sweeper publishes it later.
    """
    _check_request(name, args, reason, expires_in, issued_by)
    now = utcnow()
    record = CommandRecord(
        id=new_staff_command_id(),
        terminal_id=terminal_id,
        name=name,
        args=dict(args),
        reason=reason.strip(),
        issued_by=issued_by,
        issued_at=now,
        expires_at=now + expires_in,
        state=CommandState.QUEUED,
        case_id=case_id,
    )
    async with write_transaction(engine) as conn:
        if await get_terminal(conn, terminal_id) is None:
            raise UnknownTerminalError(terminal_id)
        await insert_command(conn, record)
        await record_audit(
            conn,
            issued_by,
            "terminal.command",
            f"terminal:{terminal_id}",
            {
                "command_id": record.id,
                "name": name,
                "args": record.args,
                "expires_at": record.expires_at.isoformat(),
                "case_id": case_id,
            },
            record.reason,
        )
    return await publish_command(engine, publisher, record)


async def publish_command(
    engine: AsyncEngine,
    publisher: Publisher | None,
    record: CommandRecord,
    *,
    timeout_s: float = PUBLISH_TIMEOUT_S,
) -> CommandRecord:
    """Hand a recorded command to the broker; the record as it stands afterwards.

    Never raises for the broker: a command it did not take stays ``queued`` unpublished.
    """
    if publisher is not None:
        command = Command(
            id=record.id,
            name=record.name,
            args=record.args,
            issued_by=record.issued_by,
            issued_at=record.issued_at,
            expires_at=record.expires_at,
        )
        try:
            await publisher.publish(record.terminal_id, Channel.CMD, command, timeout_s=timeout_s)
        # The publisher is a seam (MQTT, a fake): whatever it raises, the command stays
        # recorded and queued, and the sweeper tries again.
        except Exception as exc:
            log.warning(
                "command %s to %s not published yet: %s", record.id, record.terminal_id, exc
            )
        else:
            async with write_transaction(engine) as conn:
                terminal = await get_terminal(conn, record.terminal_id)
                await mark_published(
                    conn,
                    record.id,
                    now=utcnow(),
                    terminal_online=terminal is not None and terminal.online,
                )
    async with engine.connect() as conn:
        return await _get_command(conn, record.id) or record


async def get_command(conn: AsyncConnection, command_id: str) -> CommandRecord | None:
    """The staff command with this id, or None."""
    return await _get_command(conn, command_id)


async def list_commands(
    conn: AsyncConnection, terminal_id: str, *, limit: int = 50
) -> list[CommandRecord]:
    """The terminal's newest ``limit`` staff commands, newest first."""
    return await _list_commands(conn, terminal_id, limit=limit)
