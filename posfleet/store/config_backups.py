"""Configuration backups, restores onto a replacement terminal, and the replacement links.

Rows only: what a backup is taken for, when a restore marks a terminal replaced and
which terminals are due for a scheduled backup is decided in
:mod:`posfleet.diagnostics.config_backups`. Backups are kept by terminal id without a
foreign key, so a replaced (or decommissioned) terminal's backups stay readable.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import config_backups, config_restores, terminal_commands, terminals


class BackupSource(StrEnum):
    """Who asked for a backup."""

    SCHEDULED = "scheduled"
    MANUAL = "manual"


class NewBackup(pydantic.BaseModel):
    """A backup to store: the terminal's exportable parameters at one moment."""

    terminal_id: str
    taken_at: datetime
    firmware_version: str | None
    params: dict[str, str]
    """Parameter name to value; secret parameters are never among them."""
    withheld: list[str]
    """Secret parameters the terminal only named (set on a replacement by key injection)."""
    source: BackupSource
    taken_by: str
    command_id: str | None = None


class BackupRecord(NewBackup):
    """One stored backup (its id given by the database)."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int


class RestoreRecord(pydantic.BaseModel):
    """A restore of a backup onto a replacement terminal (one ``restore_config`` command)."""

    model_config = pydantic.ConfigDict(frozen=True)

    command_id: str
    backup_id: int
    source_terminal_id: str
    """The terminal the backup was taken from: the one being replaced."""
    target_terminal_id: str
    requested_by: str
    requested_at: datetime
    reason: str
    replaced_at: datetime | None = None
    """When the restore succeeded and the registry linked the two terminals."""


class ReplacementLinks(pydantic.BaseModel):
    """A terminal's place in a replacement: what it replaces, what replaced it."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    replaces: str | None = None
    replaced_by: str | None = None
    replaced_at: datetime | None = None


_b = config_backups.c
_r = config_restores.c
_t = terminals.c
_cmd = terminal_commands.c

BACKUP_COMMAND = "backup_config"
RESTORE_COMMAND = "restore_config"
PENDING_COMMAND_STATES = ("queued", "sent")
"""A command in one of these states may still be answered."""


def _backup(row: sa.Row[Any]) -> BackupRecord:
    values = dict(row._mapping)
    values["params"] = dict(values["params"] or {})
    values["withheld"] = list(values["withheld"] or [])
    return BackupRecord.model_validate(values)


async def insert_backup(conn: AsyncConnection, backup: NewBackup) -> int | None:
    """Store ``backup``; None (and nothing stored) if its command's backup is stored already.

    The terminal's result may be delivered twice (QoS 1 after a reconnect): one backup.
    """
    if backup.command_id is not None:
        known = await conn.scalar(sa.select(_b.id).where(_b.command_id == backup.command_id))
        if known is not None:
            return None
    result = await conn.execute(
        sa.insert(config_backups).values(**backup.model_dump()).returning(_b.id)
    )
    return int(result.scalar_one())


async def get_backup(conn: AsyncConnection, backup_id: int) -> BackupRecord | None:
    """The backup with this id, or None."""
    row = (await conn.execute(sa.select(config_backups).where(_b.id == backup_id))).first()
    return None if row is None else _backup(row)


async def list_backups(
    conn: AsyncConnection, terminal_id: str, *, limit: int = 20
) -> list[BackupRecord]:
    """The terminal's newest ``limit`` backups, newest first."""
    query = (
        sa.select(config_backups)
        .where(_b.terminal_id == terminal_id)
        .order_by(_b.taken_at.desc(), _b.id.desc())
        .limit(limit)
    )
    return [_backup(row) for row in (await conn.execute(query)).all()]


async def latest_backup(conn: AsyncConnection, terminal_id: str) -> BackupRecord | None:
    """The terminal's newest backup, or None if it has none."""
    found = await list_backups(conn, terminal_id, limit=1)
    return found[0] if found else None


async def backup_of_command(conn: AsyncConnection, command_id: str) -> BackupRecord | None:
    """The backup a ``backup_config`` command's result stored, or None (not yet)."""
    row = (await conn.execute(sa.select(config_backups).where(_b.command_id == command_id))).first()
    return None if row is None else _backup(row)


async def insert_restore(conn: AsyncConnection, restore: RestoreRecord) -> None:
    """Record a restore as its command is issued."""
    await conn.execute(sa.insert(config_restores).values(**restore.model_dump()))


async def get_restore(conn: AsyncConnection, command_id: str) -> RestoreRecord | None:
    """The restore carried by this ``restore_config`` command, or None."""
    row = (
        await conn.execute(sa.select(config_restores).where(_r.command_id == command_id))
    ).first()
    return None if row is None else RestoreRecord.model_validate(dict(row._mapping))


async def list_restores(
    conn: AsyncConnection, terminal_id: str, *, limit: int = 20
) -> list[RestoreRecord]:
    """Restores from or onto ``terminal_id``, newest first."""
    query = (
        sa.select(config_restores)
        .where(sa.or_(_r.source_terminal_id == terminal_id, _r.target_terminal_id == terminal_id))
        .order_by(_r.requested_at.desc())
        .limit(limit)
    )
    return [RestoreRecord.model_validate(dict(r._mapping)) for r in (await conn.execute(query))]


async def replacement_links(conn: AsyncConnection, terminal_id: str) -> ReplacementLinks | None:
    """The terminal's replacement links; None for a terminal the registry does not know."""
    row = (
        await conn.execute(
            sa.select(_t.terminal_id, _t.replaces, _t.replaced_by, _t.replaced_at).where(
                _t.terminal_id == terminal_id
            )
        )
    ).first()
    return None if row is None else ReplacementLinks.model_validate(dict(row._mapping))


async def link_replacement(
    conn: AsyncConnection, command_id: str, old: str, new: str, *, now: datetime
) -> bool:
    """Mark ``old`` replaced by ``new`` (and ``new`` as replacing ``old``); False if the
    restore carried by ``command_id`` had linked them already (a redelivered result)."""
    marked = await conn.execute(
        sa.update(config_restores)
        .where(_r.command_id == command_id, _r.replaced_at.is_(None))
        .values(replaced_at=now)
    )
    if marked.rowcount != 1:
        return False
    await conn.execute(
        sa.update(terminals).where(_t.terminal_id == old).values(replaced_by=new, replaced_at=now)
    )
    await conn.execute(sa.update(terminals).where(_t.terminal_id == new).values(replaces=old))
    return True


async def due_for_backup(conn: AsyncConnection, *, taken_before: datetime, limit: int) -> list[str]:
    """Online, unreplaced terminals whose newest backup is older than ``taken_before``
    (or that have none) and with no backup on the way: those never backed up first,
    then the longest ago."""
    newest = (
        sa.select(_b.terminal_id, sa.func.max(_b.taken_at).label("taken_at"))
        .group_by(_b.terminal_id)
        .subquery()
    )
    pending = sa.exists().where(
        _cmd.terminal_id == _t.terminal_id,
        _cmd.name == BACKUP_COMMAND,
        _cmd.state.in_(PENDING_COMMAND_STATES),
    )
    query = (
        sa.select(_t.terminal_id)
        .select_from(terminals.outerjoin(newest, newest.c.terminal_id == _t.terminal_id))
        .where(
            _t.online.is_(True),
            _t.replaced_by.is_(None),
            sa.or_(newest.c.taken_at.is_(None), newest.c.taken_at < taken_before),
            sa.not_(pending),
        )
        .order_by(newest.c.taken_at.is_not(None), newest.c.taken_at, _t.terminal_id)
        .limit(limit)
    )
    return list((await conn.scalars(query)).all())
