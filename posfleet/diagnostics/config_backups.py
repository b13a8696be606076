"""Configuration backups of terminals, and restoring one onto a replacement terminal.

A backup is the terminal's answer to a ``backup_config`` command (issued by a person or
by :class:`~posfleet.diagnostics.backup_schedule.ScheduledBackups`): the ingest's
result handler calls :func:`on_command_result` in its transaction, which stores the
parameters with the terminal's firmware version and the time. Secret parameters never
reach the centre; the terminal only names them, and they are stored as names.

Replacing a terminal: :func:`restore_backup` sends the backup's parameters to the new
terminal as ``restore_config`` (through :func:`~posfleet.diagnostics.remote_commands.
issue_command`, so it is recorded, audited and queued for an offline terminal like any
staff command). When the new terminal answers that it applied them, the registry marks
the old terminal ``replaced_by`` the new one and the new one as ``replaces`` the old:
the old terminal's history stays where it was, one link away.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

import pydantic
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.broker_bridge.downlink import Publisher
from posfleet.contract import utcnow
from posfleet.diagnostics.config_diff import ConfigDiff, diff_params, restorable
from posfleet.diagnostics.errors import (
    BackupNotFoundError,
    RestoreRefusedError,
    UnknownTerminalError,
)
from posfleet.diagnostics.remote_commands import (
    CommandRecord,
    CommandState,
    issue_command,
    publish_command,
)
from posfleet.store.accounts import record_audit
from posfleet.store.config_backups import (
    BACKUP_COMMAND,
    RESTORE_COMMAND,
    BackupRecord,
    BackupSource,
    NewBackup,
    RestoreRecord,
    get_backup,
    get_restore,
    insert_backup,
    insert_restore,
    latest_backup,
    link_replacement,
    replacement_links,
)
from posfleet.store.engine import write_transaction
from posfleet.store.terminals import get_terminal

log = logging.getLogger(__name__)

SCHEDULE_ACTOR = "system:config-backups"
"""Who the scheduled backups are issued by (and how their source is told apart)."""
BACKUP_EXPIRY = timedelta(hours=1)
RESTORE_EXPIRY = timedelta(hours=4)
"""A replacement terminal is often switched on a while after the restore is asked for."""


class _BackupOutput(pydantic.BaseModel):
    """What the agent's ``backup_config`` answers."""

    params: dict[str, str]
    withheld: list[str] = []


async def take_backup(
    engine: AsyncEngine,
    publisher: Publisher | None,
    terminal_id: str,
    *,
    issued_by: str,
    reason: str = "",
) -> CommandRecord:
    """Ask ``terminal_id`` for a backup now; the backup is stored when it answers."""
    return await issue_command(
        engine,
        publisher,
        terminal_id,
        BACKUP_COMMAND,
        {},
        issued_by=issued_by,
        reason=reason or "configuration backup",
        expires_in=BACKUP_EXPIRY,
    )


async def on_command_result(conn: AsyncConnection, record: CommandRecord) -> None:
    """The result consumer: store a backup, or link a replacement after its restore.

    Runs in the ingest's transaction once a staff command's result is stored.
    """
    if record.state is not CommandState.DONE:
        return
    if record.name == BACKUP_COMMAND:
        await _store_backup(conn, record)
    elif record.name == RESTORE_COMMAND:
        await _finish_restore(conn, record)


async def _store_backup(conn: AsyncConnection, record: CommandRecord) -> None:
    try:
        output = _BackupOutput.model_validate(record.output or {})
    except pydantic.ValidationError as exc:
        log.warning("backup_config result %s is not a backup: %s", record.id, exc)
        return
    secret = set(output.withheld)
    terminal = await get_terminal(conn, record.terminal_id)
    await insert_backup(
        conn,
        NewBackup(
            terminal_id=record.terminal_id,
            taken_at=record.finished_at or utcnow(),
            firmware_version=terminal.firmware_version if terminal else None,
            # A terminal that named a parameter secret never has its value kept here,
            # even if it sent one by mistake.
            params={k: v for k, v in output.params.items() if k not in secret},
            withheld=sorted(secret),
            source=(
                BackupSource.SCHEDULED
                if record.issued_by == SCHEDULE_ACTOR
                else BackupSource.MANUAL
            ),
            taken_by=record.issued_by,
            command_id=record.id,
        ),
    )


async def _finish_restore(conn: AsyncConnection, record: CommandRecord) -> None:
    restore = await get_restore(conn, record.id)
    if restore is None:
        return  # a restore_config sent by hand, not as a replacement
    now = record.finished_at or utcnow()
    old, new = restore.source_terminal_id, restore.target_terminal_id
    if not await link_replacement(conn, record.id, old, new, now=now):
        return
    output = record.output or {}
    await record_audit(
        conn,
        restore.requested_by,
        "terminal.replaced",
        f"terminal:{old}",
        {
            "replaced_by": new,
            "backup_id": restore.backup_id,
            "command_id": record.id,
            "applied": len(output.get("applied", [])),
            "rejected": sorted(output.get("rejected", {})),
        },
        restore.reason,
    )


@dataclass(frozen=True, slots=True)
class RestorePreview:
    """A backup, the terminal it would go onto, and what would change there."""

    backup: BackupRecord
    target_terminal_id: str
    target_backup: BackupRecord | None
    """The target's own newest backup, which the diff compares with (None: unknown)."""
    diff: ConfigDiff


async def preview_restore(
    conn: AsyncConnection, backup_id: int, target_terminal_id: str
) -> RestorePreview:
    """What restoring ``backup_id`` onto ``target_terminal_id`` would change.

    Raises :class:`BackupNotFoundError`, :class:`UnknownTerminalError` or
    :class:`RestoreRefusedError` for a restore that cannot go ahead.
    """
    backup = await get_backup(conn, backup_id)
    if backup is None:
        raise BackupNotFoundError(backup_id)
    await _check_restore(conn, backup, target_terminal_id)
    current = await latest_backup(conn, target_terminal_id)
    diff = diff_params(
        backup.params,
        current.params if current is not None else None,
        withheld=backup.withheld,
    )
    return RestorePreview(backup, target_terminal_id, current, diff)


async def _check_restore(conn: AsyncConnection, backup: BackupRecord, target: str) -> None:
    if target == backup.terminal_id:
        raise RestoreRefusedError(
            "target_terminal_id", "the replacement must be another terminal than the backup's"
        )
    target_links = await replacement_links(conn, target)
    if target_links is None:
        raise UnknownTerminalError(target)
    if target_links.replaced_by is not None:
        raise RestoreRefusedError(
            "target_terminal_id",
            f"terminal {target} was itself replaced by {target_links.replaced_by}",
            conflict=True,
        )
    old_links = await replacement_links(conn, backup.terminal_id)
    if old_links is not None and old_links.replaced_by not in (None, target):
        raise RestoreRefusedError(
            "backup_id",
            f"terminal {backup.terminal_id} was already replaced by {old_links.replaced_by}",
            conflict=True,
        )
    if not restorable(backup.params):
        raise RestoreRefusedError("backup_id", "the backup holds no parameter a terminal takes")


async def restore_backup(
    engine: AsyncEngine,
    publisher: Publisher | None,
    backup_id: int,
    target_terminal_id: str,
    *,
    requested_by: str,
    reason: str,
    expires_in: timedelta = RESTORE_EXPIRY,
) -> tuple[RestoreRecord, CommandRecord]:
    """Send backup ``backup_id`` to ``target_terminal_id`` as its replacement's configuration.

    The restore is recorded before its command is published, so the terminal's answer
    always finds it. Raises like :func:`preview_restore`, and
    :class:`~posfleet.diagnostics.errors.CommandRequestError` (a reason is required).
    """
    async with engine.connect() as conn:
        preview = await preview_restore(conn, backup_id, target_terminal_id)
    backup = preview.backup
    command = await issue_command(
        engine,
        None,
        target_terminal_id,
        RESTORE_COMMAND,
        {"params": restorable(backup.params)},
        issued_by=requested_by,
        reason=reason,
        expires_in=expires_in,
    )
    restore = RestoreRecord(
        command_id=command.id,
        backup_id=backup.id,
        source_terminal_id=backup.terminal_id,
        target_terminal_id=target_terminal_id,
        requested_by=requested_by,
        requested_at=command.issued_at,
        reason=command.reason,
    )
    async with write_transaction(engine) as conn:
        await insert_restore(conn, restore)
        await record_audit(
            conn,
            requested_by,
            "config.restore",
            f"terminal:{target_terminal_id}",
            {
                "backup_id": backup.id,
                "replaces": backup.terminal_id,
                "command_id": command.id,
                "parameters": len(preview.diff.to_apply),
            },
            command.reason,
        )
    return restore, await publish_command(engine, publisher, command)
