"""``posfleet terminal backup|backups|restore``: configuration backups from the shell.

The commands are recorded in the database like the dashboard's; a running central
service sends them to the terminal (its command sweeper publishes what is queued), and
these verbs wait for the answer, saying where it stands meanwhile. ``restore`` prints
what would change on the new terminal first; ``--dry-run`` stops there.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
import time
from typing import Any

from posfleet.central.cli_terminals import with_db

POLL_S = 0.5


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def register_terminal_verbs(actions: Any) -> None:
    """Add ``backup``, ``backups`` and ``restore`` to the ``terminal`` group."""
    p = actions.add_parser("backup", help="back a terminal's configuration up now")
    p.add_argument("terminal_id")
    p.add_argument("--reason", default="", help="why (kept in the audit log)")
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for it (60)")
    p.set_defaults(func=_cmd_backup)

    p = actions.add_parser("backups", help="a terminal's configuration backups and links")
    p.add_argument("terminal_id")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=_cmd_backups)

    p = actions.add_parser("restore", help="restore a backup onto a replacement terminal")
    p.add_argument("backup_id", type=int)
    p.add_argument("--onto", required=True, metavar="NEW_ID", help="the replacement terminal")
    p.add_argument("--reason", default="", help="why (required unless --dry-run)")
    p.add_argument("--dry-run", action="store_true", help="only show what would change")
    p.add_argument("--wait", type=float, default=120.0, help="seconds to wait for it (120)")
    p.set_defaults(func=_cmd_restore)


def _error(message: str) -> int:
    print(f"posfleet: error: {message}", file=sys.stderr)
    return 1


async def _until_final(engine: Any, command_id: str, wait_s: float) -> Any:
    """The command once final (or as it stands when ``wait_s`` is up), printing its steps."""
    from posfleet.diagnostics.remote_commands import get_command

    deadline = time.monotonic() + wait_s
    shown = None
    while True:
        async with engine.connect() as conn:
            record = await get_command(conn, command_id)
        if record is not None and record.state != shown:
            shown = record.state
            print(f"  {command_id}: {record.state}", file=sys.stderr)
        if record is None or record.final or time.monotonic() >= deadline:
            return record
        await asyncio.sleep(POLL_S)  # a person waits for a terminal; poll the record


def _cmd_backup(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.config_backups import take_backup
    from posfleet.diagnostics.errors import CommandRequestError, UnknownTerminalError
    from posfleet.store.config_backups import backup_of_command

    async def work(engine: Any) -> int:
        try:
            command = await take_backup(
                engine, None, args.terminal_id, issued_by=_actor(), reason=args.reason
            )
        except (CommandRequestError, UnknownTerminalError) as exc:
            return _error(str(exc))
        print(f"backup asked for: command {command.id}", file=sys.stderr)
        record = await _until_final(engine, command.id, args.wait)
        async with engine.connect() as conn:
            backup = await backup_of_command(conn, command.id)
        if backup is None:
            state = record.state if record else "unknown"
            return _error(f"no backup yet (command {command.id} is {state})")
        print(
            f"backup {backup.id} of {backup.terminal_id}: {len(backup.params)} parameters, "
            f"firmware {backup.firmware_version or '-'}, secret (not kept): "
            f"{', '.join(backup.withheld) or '-'}"
        )
        return 0

    return with_db(args, work)


def _cmd_backups(args: argparse.Namespace) -> int:
    from posfleet.store.config_backups import list_backups, replacement_links

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            links = await replacement_links(conn, args.terminal_id)
            backups = await list_backups(conn, args.terminal_id)
        if links is None:
            return _error(f"no terminal {args.terminal_id!r}")
        if args.json:
            shown = {
                "links": links.model_dump(mode="json"),
                "items": [b.model_dump(mode="json") for b in backups],
            }
            print(json.dumps(shown))
            return 0
        if links.replaced_by:
            print(f"replaced by {links.replaced_by} on {links.replaced_at:%Y-%m-%d %H:%M}")
        if links.replaces:
            print(f"replaces {links.replaces}")
        for b in backups:
            print(
                f"{b.id:>6}  {b.taken_at:%Y-%m-%d %H:%M}  {b.firmware_version or '-':<12} "
                f"{len(b.params):>3} parameters  {b.source.value:<9} {b.taken_by}"
            )
        if not backups:
            print(f"no backup of {args.terminal_id} yet")
        return 0

    return with_db(args, work)


def _cmd_restore(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.config_backups import preview_restore, restore_backup
    from posfleet.diagnostics.config_diff import ChangeKind
    from posfleet.diagnostics.errors import DiagnosticsError

    async def work(engine: Any) -> int:
        try:
            async with engine.connect() as conn:
                preview = await preview_restore(conn, args.backup_id, args.onto)
        except DiagnosticsError as exc:
            return _error(str(exc))
        for change in preview.diff.changes:
            if change.kind is not ChangeKind.SAME:
                print(
                    f"  {change.kind.value:<9} {change.name}: {change.current} -> {change.restored}"
                )
        if args.dry_run:
            return 0
        if not args.reason.strip():
            return _error("give a --reason for the restore")
        try:
            _, command = await restore_backup(
                engine, None, args.backup_id, args.onto, requested_by=_actor(), reason=args.reason
            )
        except DiagnosticsError as exc:
            return _error(str(exc))
        record = await _until_final(engine, command.id, args.wait)
        if record is None or record.state != "done":
            state = record.state if record else "unknown"
            detail = f": {record.error}" if record is not None and record.error else ""
            return _error(f"the restore is {state}{detail}")
        print(f"restored onto {args.onto}; {preview.backup.terminal_id} is marked replaced by it")
        return 0

    return with_db(args, work)
