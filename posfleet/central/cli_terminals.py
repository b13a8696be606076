"""``posfleet terminal ...``: find a terminal and read what the centre knows about it.

``find TEXT`` matches a terminal id, serial number, merchant name or id, site or the
merchant contact's phone number (prefix or substring); ``show ID`` prints one terminal.
Other features add their own verbs to the same ``terminal`` group (remote commands,
configuration backups) through a ``register_terminal_verbs(actions)`` function that
:func:`register` calls. Heavy modules are imported by the commands that run, so that
building the parser keeps ``posfleet --help`` quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from posfleet.central.cli_diagnostics import _with_db

__all__ = ["_with_db", "register", "terminal_actions", "with_db"]
"""``_with_db`` too: the other ``terminal`` verbs' modules import it from here."""

if TYPE_CHECKING:
    from posfleet.store.terminals import TerminalRecord


def terminal_actions(sub: Any) -> Any:
    """Add the ``terminal`` command group to ``sub``; return its subparsers for the verbs."""
    return sub.add_parser(
        "terminal", help="one terminal: find, show (and the verbs other features add)"
    ).add_subparsers(metavar="ACTION")


def register(sub: Any) -> None:
    """Add ``posfleet terminal`` with its ``find`` and ``show`` verbs (and the others')."""
    actions = terminal_actions(sub)
    p = actions.add_parser(
        "find", help="terminals whose id, serial, merchant, site or contact phone match TEXT"
    )
    p.add_argument("text", help="a part of an id, serial, merchant name, site or phone number")
    p.add_argument("--limit", type=int, default=20, help="at most this many (20)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_cmd_find)

    p = actions.add_parser("show", help="one terminal: inventory, merchant, presence, health")
    p.add_argument("terminal_id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)
    # Other features add their verbs below, one call each: register_terminal_verbs(actions).
    from posfleet.central import cli_terminal_backups, cli_terminal_commands

    cli_terminal_backups.register_terminal_verbs(actions)
    cli_terminal_commands.register_terminal_verbs(actions)


with_db = _with_db
"""Run ``work(engine)`` on this installation's database, with readable errors."""


def _line(record: TerminalRecord) -> str:
    presence = "online" if record.online else "offline"
    seen = record.last_seen.strftime("%Y-%m-%d %H:%M")
    return (
        f"{record.terminal_id:<24} {presence:<8} {record.model or '-':<14} "
        f"{record.serial or '-':<16} {record.merchant_name or record.merchant_id or '-':<24} "
        f"{record.site_id or '-':<14} {seen}"
    )


def _cmd_find(args: argparse.Namespace) -> int:
    from posfleet.store.terminal_filters import TerminalFilter
    from posfleet.store.terminals import list_terminals

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await list_terminals(
                conn, limit=args.limit, where=TerminalFilter(text=args.text)
            )
        for record in found:
            print(record.model_dump_json() if args.json else _line(record))
        if not found and not args.json:
            print(f"no terminal matches {args.text!r}")
        return 0

    return with_db(args, work)


def _cmd_show(args: argparse.Namespace) -> int:
    from posfleet.store.terminals import get_terminal

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            record = await get_terminal(conn, args.terminal_id)
        if record is None:
            print(f"posfleet: error: no terminal {args.terminal_id!r}", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(record.model_dump(mode="json")))
            return 0
        print(_line(record))
        print(f"  firmware:    {record.firmware_version or '-'}   agent: {record.agent_version}")
        print(f"  merchant:    {record.merchant_id or '-'} {record.merchant_name}")
        print(f"  site:        {record.site_id or '-'} {record.site_name}")
        print(f"  timezone:    {record.timezone or '-'}")
        print(f"  first seen:  {record.first_seen:%Y-%m-%d %H:%M}")
        if record.health_at is not None:
            print(f"  last health: {record.health_at:%Y-%m-%d %H:%M:%S} (seq {record.health_seq})")
        return 0

    return with_db(args, work)
