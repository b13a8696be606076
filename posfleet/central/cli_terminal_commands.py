"""``posfleet terminal command|commands``: remote diagnostics from the shell.

``command ID NAME`` records the command like the dashboard does (audited, with the
reason) and waits for the terminal's answer, printing each state it passes through; a
running central service publishes it (its command sweeper sends what is queued) and
stores the answer. ``commands ID`` lists the terminal's history.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from typing import Any

from posfleet.central.cli_terminal_backups import _actor, _error, _until_final
from posfleet.central.cli_terminals import _with_db


def register_terminal_verbs(actions: Any) -> None:
    """Add ``command`` and ``commands`` to the ``terminal`` group."""
    p = actions.add_parser("command", help="run a remote command on a terminal, wait for it")
    p.add_argument("terminal_id")
    p.add_argument("name", help="print_test, card_reader_test, host_ping, self_test, reboot, ...")
    p.add_argument(
        "--arg", action="append", default=[], metavar="K=V", help="an argument (repeatable)"
    )
    p.add_argument("--reason", default="", help="why (kept in the audit log; reboot needs one)")
    p.add_argument(
        "--expires-in", type=float, default=3600.0, help="seconds an offline terminal has (3600)"
    )
    p.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the answer (60)")
    p.add_argument("--json", action="store_true", help="the final record as JSON")
    p.set_defaults(func=_cmd_command)

    p = actions.add_parser("commands", help="a terminal's remote commands, newest first")
    p.add_argument("terminal_id")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true", help="JSON lines")
    p.set_defaults(func=_cmd_commands)


def parse_args(pairs: list[str]) -> dict[str, Any]:
    """``["from=2026-12-01T00:00Z", "n=3"]`` as arguments; a value that is JSON is taken so."""
    args: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise ValueError(f"--arg takes NAME=VALUE, not {pair!r}")
        try:
            args[key] = json.loads(value)
        except ValueError:
            args[key] = value
    return args


def describe(record: Any) -> list[str]:
    """The record as lines a person reads: verdict, checked items, figures."""
    from posfleet.dashboard.command_output_view import command_view

    view = command_view(record)
    lines = [f"{view.label} on {record.terminal_id}: {view.state_label}"]
    if view.summary:
        lines.append(f"  {view.summary}")
    lines += [f"  {'ok   ' if c.passed else 'FAULT'} {c.label}: {c.detail}" for c in view.checks]
    lines += [f"  {name}: {value}" for name, value in view.facts]
    return lines


def _cmd_command(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.errors import CommandRequestError, UnknownTerminalError
    from posfleet.diagnostics.remote_commands import CommandState, issue_command

    try:
        command_args = parse_args(args.arg)
    except ValueError as exc:
        return _error(str(exc))

    async def work(engine: Any) -> int:
        try:
            record = await issue_command(
                engine,
                None,
                args.terminal_id,
                args.name,
                command_args,
                issued_by=_actor(),
                reason=args.reason,
                expires_in=timedelta(seconds=args.expires_in),
            )
        except (CommandRequestError, UnknownTerminalError) as exc:
            return _error(str(exc))
        print(f"command {record.id} recorded; waiting for the terminal", file=sys.stderr)
        final = await _until_final(engine, record.id, args.wait)
        if args.json:
            print(final.model_dump_json())
        else:
            print("\n".join(describe(final)))
            text = (final.output or {}).get("text")
            if final.name == "collect_logs" and isinstance(text, str):
                print(text, end="" if text.endswith("\n") else "\n")
        if not final.final:
            print(
                f"posfleet: still {final.state} after {args.wait:g} s; follow it with "
                f"'posfleet terminal commands {record.terminal_id}'",
                file=sys.stderr,
            )
        return 0 if final.state is CommandState.DONE else 1

    return _with_db(args, work)


def _cmd_commands(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.remote_commands import list_commands

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await list_commands(conn, args.terminal_id, limit=args.limit)
        for record in found:
            if args.json:
                print(record.model_dump_json())
            else:
                when = record.issued_at.strftime("%Y-%m-%d %H:%M")
                print(
                    f"{record.id}  {when}  {record.name:<17} {record.state:<8} {record.issued_by}"
                )
        if not found and not args.json:
            print(f"no commands were sent to {args.terminal_id}")
        return 0

    return _with_db(args, work)
