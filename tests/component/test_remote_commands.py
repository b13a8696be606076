"""Staff commands: recorded, audited, published, answered, swept to a final state.

The broker is played by a fake publisher; the database is real (SQLite, and PostgreSQL
where the lifecycle's SQL runs).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import Channel, Command, CommandResult, CommandStatus, State, utcnow
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.diagnostics.command_sweeper import CommandSweeper
from posfleet.diagnostics.errors import CommandRequestError, UnknownTerminalError
from posfleet.diagnostics.remote_commands import (
    CommandRecord,
    CommandState,
    get_command,
    issue_command,
    list_commands,
)
from posfleet.store import apply_state, write_transaction
from posfleet.store.accounts import list_audit

SEEN: list[CommandRecord] = []


async def remember(conn: AsyncConnection, record: CommandRecord) -> None:
    """A result consumer: notes what it was given."""
    SEEN.append(record)


async def _terminal(engine: AsyncEngine, terminal_id: str, *, online: bool) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await apply_state(
            conn,
            terminal_id,
            State(online=online, agent_version="1.4.0", boot_id=f"b-{now.timestamp()}", ts=now),
            now=now,
        )


def _result(record: CommandRecord, status: CommandStatus, **output: Any) -> CommandResult:
    return CommandResult(id=record.id, status=status, output=output, ts=utcnow())


async def _ingest(
    engine: AsyncEngine, handler: CommandResultHandler, terminal_id: str, payload: object
) -> bool | str | None:
    async with write_transaction(engine) as conn:
        return await handler(conn, terminal_id, payload, now=utcnow())


async def test_a_command_is_recorded_sent_answered_and_handed_to_consumers(
    engine: AsyncEngine,
) -> None:
    broker = MemoryPublisher()
    await _terminal(engine, "T-ON", online=True)
    record = await issue_command(
        engine, broker, "T-ON", "host_ping", {}, issued_by="alice", reason="merchant calls"
    )
    assert record.state is CommandState.SENT and record.published_at is not None
    (terminal_id, channel, command) = broker.sent[0]
    assert (terminal_id, channel) == ("T-ON", Channel.CMD)
    assert isinstance(command, Command) and command.id == record.id
    assert command.expires_at == record.expires_at
    async with engine.connect() as conn:
        audit = await list_audit(conn)
    assert audit[0].action == "terminal.command" and audit[0].reason == "merchant calls"
    assert audit[0].detail["command_id"] == record.id

    SEEN.clear()
    handler = CommandResultHandler(consumers=(remember,))
    answer = _result(record, CommandStatus.OK, latency_ms=42.0)
    assert await _ingest(engine, handler, "T-ON", answer) is True
    assert await _ingest(engine, handler, "T-ON", answer) is False
    async with engine.connect() as conn:
        done = await get_command(conn, record.id)
        history = await list_commands(conn, "T-ON")
    assert done is not None and done.state is CommandState.DONE
    assert done.output == {"latency_ms": 42.0} and done.final
    assert [r.id for r in history] == [record.id]
    assert [r.state for r in SEEN] == [CommandState.DONE]
    wrong = await _ingest(engine, handler, "T-OTHER", answer)
    assert isinstance(wrong, str) and "was sent to terminal T-ON" in wrong


async def test_an_offline_terminal_gets_its_command_at_reconnect_or_it_expires(
    sqlite_engine: AsyncEngine,
) -> None:
    engine, broker = sqlite_engine, MemoryPublisher()
    await _terminal(engine, "T-OFF", online=False)
    waiting = await issue_command(
        engine, broker, "T-OFF", "print_test", {}, issued_by="bob", reason=""
    )
    late = await issue_command(
        engine,
        broker,
        "T-OFF",
        "reboot",
        {},
        issued_by="bob",
        reason="frozen screen",
        expires_in=timedelta(seconds=30),
    )
    assert waiting.state is late.state is CommandState.QUEUED
    assert waiting.published_at is not None  # the broker holds it in the terminal's session

    clock = [utcnow() + timedelta(minutes=1)]
    sweeper = CommandSweeper(engine, broker, clock=lambda: clock[0])
    await sweeper.sweep()
    async with engine.connect() as conn:
        expired = await get_command(conn, late.id)
        still = await get_command(conn, waiting.id)
    assert expired is not None and expired.state is CommandState.EXPIRED
    assert expired.error is not None and "never came online" in expired.error
    assert still is not None and still.state is CommandState.QUEUED

    await _terminal(engine, "T-OFF", online=True)
    await sweeper.sweep()
    async with engine.connect() as conn:
        sent = await get_command(conn, waiting.id)
    assert sent is not None and sent.state is CommandState.SENT

    # The terminal answers the expired reboot after all (it had it): its word wins.
    handler = CommandResultHandler()
    refused = _result(late, CommandStatus.EXPIRED)
    assert await _ingest(engine, handler, "T-OFF", refused) is True


async def test_a_command_the_broker_did_not_take_is_published_by_the_sweeper(
    sqlite_engine: AsyncEngine,
) -> None:
    engine, broker = sqlite_engine, MemoryPublisher()
    await _terminal(engine, "T-AWAY", online=True)
    broker.failing = True
    record = await issue_command(
        engine, broker, "T-AWAY", "self_test", {}, issued_by="carol", reason=""
    )
    assert record.state is CommandState.QUEUED and record.published_at is None
    sweeper = CommandSweeper(engine, broker)
    await sweeper.sweep()
    assert broker.sent == []
    broker.failing = False
    await sweeper.sweep()
    async with engine.connect() as conn:
        sent = await get_command(conn, record.id)
    assert sent is not None and sent.state is CommandState.SENT
    assert [m[2].id for m in broker.sent] == [record.id]  # type: ignore[attr-defined]
    assert sweeper.stats.republished == 1


@pytest.mark.parametrize(
    "case",
    [
        ("format_disk", {}, "", timedelta(hours=1), "name"),
        ("firmware_cancel", {}, "", timedelta(hours=1), "name"),
        ("reboot", {}, "  ", timedelta(hours=1), "reason"),
        ("print_test", {}, "", timedelta(days=8), "expires_in_s"),
        ("print_test", {"x": object()}, "", timedelta(hours=1), "args"),
    ],
)
async def test_requests_that_cannot_be_sent_are_refused_with_the_reason(
    sqlite_engine: AsyncEngine, case: tuple[str, dict[str, Any], str, timedelta, str]
) -> None:
    name, args, reason, expires_in, field = case
    await _terminal(sqlite_engine, "T-1", online=True)
    with pytest.raises(CommandRequestError) as refused:
        await issue_command(
            sqlite_engine,
            MemoryPublisher(),
            "T-1",
            name,
            args,
            issued_by="dave",
            reason=reason,
            expires_in=expires_in,
        )
    assert refused.value.field == field


async def test_unknown_terminals_and_other_results_are_not_staff_commands(
    sqlite_engine: AsyncEngine,
) -> None:
    with pytest.raises(UnknownTerminalError):
        await issue_command(
            sqlite_engine, MemoryPublisher(), "NOPE", "print_test", {}, issued_by="e", reason=""
        )
    passed: list[str] = []

    async def firmware(
        conn: AsyncConnection, terminal_id: str, payload: Any, /, *, now: datetime
    ) -> bool | str | None:
        passed.append(payload.id)
        return True if payload.id.startswith("fwcancel-") else None

    handler = CommandResultHandler(others=(firmware,))
    cancel = CommandResult(id="fwcancel-1-abc", status=CommandStatus.OK, ts=utcnow())
    playbook = CommandResult(id="c1-0a0b0c", status=CommandStatus.OK, ts=utcnow())
    assert await _ingest(sqlite_engine, handler, "T-1", cancel) is True
    assert await _ingest(sqlite_engine, handler, "T-1", playbook) is None
    assert passed == ["fwcancel-1-abc", "c1-0a0b0c"]
