"""Configuration backups: stored from the terminal's answer, previewed, restored, scheduled.

The broker is played by a fake publisher and the terminals' answers are fed to the real
``cmd/result`` handler; the database is real (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import Channel, CommandResult, CommandStatus, State, utcnow
from posfleet.diagnostics.backup_schedule import BackupSchedule, ScheduledBackups
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.diagnostics.config_backups import (
    SCHEDULE_ACTOR,
    on_command_result,
    preview_restore,
    restore_backup,
    take_backup,
)
from posfleet.diagnostics.config_diff import ChangeKind, diff_params
from posfleet.diagnostics.errors import RestoreRefusedError
from posfleet.diagnostics.remote_commands import CommandRecord
from posfleet.store import apply_state, write_transaction
from posfleet.store.accounts import list_audit
from posfleet.store.config_backups import (
    BackupSource,
    backup_of_command,
    list_backups,
    replacement_links,
)

HANDLER = CommandResultHandler(consumers=(on_command_result,))
PARAMS = {"terminal.serial": "SN-OLD", "receipt.header": "Bakery Lenz", "display.language": "de"}


async def _terminal(engine: AsyncEngine, terminal_id: str, *, online: bool = True) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await apply_state(
            conn, terminal_id, State(online=online, agent_version="1", boot_id="b", ts=now), now=now
        )


async def _answer(engine: AsyncEngine, record: CommandRecord, **output: Any) -> None:
    result = CommandResult(id=record.id, status=CommandStatus.OK, output=output, ts=utcnow())
    async with write_transaction(engine) as conn:
        assert await HANDLER(conn, record.terminal_id, result, now=utcnow()) is True


async def _backed_up(engine: AsyncEngine, terminal_id: str, params: dict[str, str]) -> int:
    command = await take_backup(engine, MemoryPublisher(), terminal_id, issued_by="user:alice")
    await _answer(engine, command, params=params | {"wifi.psk": "leak"}, withheld=["wifi.psk"])
    async with engine.connect() as conn:
        backup = await backup_of_command(conn, command.id)
    assert backup is not None
    return backup.id


async def test_a_backup_is_stored_without_secrets_then_restored_onto_a_replacement(
    engine: AsyncEngine,
) -> None:
    await _terminal(engine, "T-OLD")
    await _terminal(engine, "T-NEW")
    backup_id = await _backed_up(engine, "T-OLD", PARAMS)
    await _backed_up(engine, "T-NEW", {"receipt.header": "Welcome", "display.language": "de"})
    async with engine.connect() as conn:
        (stored,) = await list_backups(conn, "T-OLD")
        preview = await preview_restore(conn, backup_id, "T-NEW")
    assert stored.params == PARAMS and stored.withheld == ["wifi.psk"]
    assert stored.source is BackupSource.MANUAL and stored.taken_by == "user:alice"
    kinds = {c.name: c.kind for c in preview.diff.changes}
    assert kinds == {
        "terminal.serial": ChangeKind.READ_ONLY,
        "receipt.header": ChangeKind.CHANGED,
        "display.language": ChangeKind.SAME,
        "wifi.psk": ChangeKind.WITHHELD,
    }

    broker = MemoryPublisher()
    restore, command = await restore_backup(
        engine, broker, backup_id, "T-NEW", requested_by="user:alice", reason="swap, reader dead"
    )
    (_, channel, sent) = broker.sent[0]
    assert channel is Channel.CMD and sent.model_dump()["args"] == {
        "params": {"receipt.header": "Bakery Lenz", "display.language": "de"}
    }
    async with engine.connect() as conn:
        assert (await replacement_links(conn, "T-OLD")).replaced_by is None  # type: ignore[union-attr]
    await _answer(engine, command, applied=["receipt.header", "display.language"], rejected={})
    await _answer_again_is_a_duplicate(engine, command)
    async with engine.connect() as conn:
        old = await replacement_links(conn, "T-OLD")
        new = await replacement_links(conn, "T-NEW")
        audit = [entry.action for entry in await list_audit(conn)]
    assert old is not None and old.replaced_by == "T-NEW" and old.replaced_at is not None
    assert new is not None and new.replaces == "T-OLD"
    assert "terminal.replaced" in audit and "config.restore" in audit
    assert restore.source_terminal_id == "T-OLD"


async def _answer_again_is_a_duplicate(engine: AsyncEngine, record: CommandRecord) -> None:
    result = CommandResult(id=record.id, status=CommandStatus.OK, output={}, ts=utcnow())
    async with write_transaction(engine) as conn:
        assert await HANDLER(conn, record.terminal_id, result, now=utcnow()) is False


async def test_a_restore_onto_the_same_or_a_replaced_terminal_is_refused(
    sqlite_engine: AsyncEngine,
) -> None:
    engine = sqlite_engine
    for tid in ("R-OLD", "R-NEW", "R-OTHER"):
        await _terminal(engine, tid)
    backup_id = await _backed_up(engine, "R-OLD", PARAMS)
    async with engine.connect() as conn:
        with pytest.raises(RestoreRefusedError, match="another terminal"):
            await preview_restore(conn, backup_id, "R-OLD")
    _, command = await restore_backup(
        engine, MemoryPublisher(), backup_id, "R-NEW", requested_by="user:bob", reason="swap"
    )
    await _answer(engine, command, applied=["receipt.header"], rejected={})
    async with engine.connect() as conn:
        with pytest.raises(RestoreRefusedError, match="already replaced by R-NEW") as refused:
            await preview_restore(conn, backup_id, "R-OTHER")
    assert refused.value.conflict


async def test_scheduled_backups_ask_online_terminals_due_within_the_budget(
    engine: AsyncEngine,
) -> None:
    for tid in ("S-1", "S-2", "S-3"):
        await _terminal(engine, tid)
    await _terminal(engine, "S-OFF", online=False)
    await _backed_up(engine, "S-3", {"receipt.header": "x"})
    broker = MemoryPublisher()
    schedule = ScheduledBackups(engine, broker, BackupSchedule(budget=2))
    assert await schedule.round() == ["S-1", "S-2"]  # never backed up first; S-OFF waits
    assert await schedule.round() == []  # their backups are on the way
    later = ScheduledBackups(
        engine, broker, BackupSchedule(budget=5), clock=lambda: utcnow() + timedelta(days=2)
    )
    assert await later.round() == ["S-3"]
    (_, _, command) = broker.sent[0]
    assert command.model_dump()["issued_by"] == SCHEDULE_ACTOR


def test_the_diff_without_a_current_backup_sets_every_parameter() -> None:
    diff = diff_params({"a": "1", "b": "2"}, None)
    assert not diff.current_known
    assert [c.kind for c in diff.changes] == [ChangeKind.SET, ChangeKind.SET]
    kept = diff_params({"a": "1"}, {"a": "1", "z": "9"})
    assert kept.count(ChangeKind.KEPT) == 1 and not kept.to_apply
