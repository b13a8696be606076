"""``posfleet firmware push|actions|cancel``: offering artifacts to terminals, watching them.

Each command works on this installation (its database and broker) or, with
``--server URL``, through the central service's API with the ops token in
``$POSFLEET_API_TOKEN``. ``firmware actions --watch`` redraws the table until every
Action shown has reached a final state (or Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from posfleet.central.settings import load_central_settings

if TYPE_CHECKING:
    from rich.console import RenderableType

TOKEN_ENV = "POSFLEET_API_TOKEN"
FINAL = frozenset({"succeeded", "failed", "rejected", "rolled_back", "timed_out", "cancelled"})
_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "rejected": "red",
    "rolled_back": "red",
    "timed_out": "red",
    "cancelled": "dim",
    "retrying": "yellow",
}
EXIT_PARTLY_REFUSED = 2
"""``firmware push``: some terminals got an Action, others were refused."""


def register(fw: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Actions commands (push, actions, cancel)."""
    p = fw.add_parser(
        "push",
        help="offer an artifact to terminals: one Action each (exit 1 if every terminal "
        "is refused, 2 if some are)",
    )
    p.add_argument("artifact", help="artifact id, name@version or SHA-256 prefix")
    p.add_argument("--terminals", required=True, help="comma-separated terminal ids")
    p.add_argument(
        "--window",
        help="maintenance window in each terminal's local time, HH:MM-HH:MM (22:00-06:00)",
    )
    p.add_argument("--weekdays", help="days the window opens, e.g. mon-fri (every day)")
    p.add_argument("--deadline", help="how long the Actions may take, e.g. 72h (72h)")
    p.add_argument(
        "--allow-downgrade-confirmed",
        action="store_true",
        help="confirm a downgrade the manifest allows (refused otherwise)",
    )
    p.add_argument("--reason", default="", help="why, for the audit log")
    _common(p)
    p.set_defaults(func=_cmd_push)

    p = fw.add_parser("actions", help="firmware Actions, newest first, with counts per state")
    p.add_argument("--state", default="", help="comma-separated states, e.g. failed,timed_out")
    p.add_argument("--terminal", help="only this terminal")
    p.add_argument("--artifact", help="only this artifact (id, name@version, SHA-256 prefix)")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument(
        "--watch",
        action="store_true",
        help="redraw until every Action shown is final (Ctrl-C stops earlier)",
    )
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (2)")
    _common(p)
    p.set_defaults(func=_cmd_actions)

    p = fw.add_parser("cancel", help="cancel an open Action: no more offers, downloads refused")
    p.add_argument("action_id", type=int)
    p.add_argument("--reason", default="", help="why, for the audit log")
    _common(p)
    p.set_defaults(func=_cmd_cancel)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument(
        "--server",
        help=f"through this central service's API (token in ${TOKEN_ENV}); "
        "default: this installation's database and broker",
    )


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(
    args: argparse.Namespace, local: Callable[[], Coroutine[Any, Any, Any]], remote: Any
) -> Any:
    """Run the local operation, or ``remote(api)`` with ``--server``; errors are one line."""
    from posfleet.central.firmware_action_admin import FirmwareActionAdminError, RemoteApi

    if args.server:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise FirmwareActionAdminError(
                f"set {TOKEN_ENV} to an ops API token (posfleet token create NAME --role ops)"
            )
        return asyncio.run(remote(RemoteApi(args.server, token)))
    return asyncio.run(local())


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from posfleet.central.firmware_action_admin import FirmwareActionAdminError

        try:
            return func(args)
        except FirmwareActionAdminError as exc:
            print(f"posfleet: error: {exc}", file=sys.stderr)
            return 1

    return run


@_guarded
def _cmd_push(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_action_admin import PushBodyFields, push_local

    push = PushBodyFields(
        artifact=args.artifact,
        terminal_ids=[t.strip() for t in args.terminals.split(",") if t.strip()],
        window=args.window,
        weekdays=args.weekdays,
        deadline=args.deadline,
        allow_downgrade_confirmed=args.allow_downgrade_confirmed,
        reason=args.reason,
    )
    settings = load_central_settings(args.config)
    result = _run(
        args, lambda: push_local(settings, push, actor=_actor()), lambda api: api.push(push)
    )
    if args.json:
        print(json.dumps(result))
    else:
        _print_push(result)
    if not result["created"]:
        return 1
    return EXIT_PARTLY_REFUSED if result["refused"] else 0


def _print_push(result: dict[str, Any]) -> None:
    artifact = result.get("artifact") or {}
    label = f"{artifact.get('name')}@{artifact.get('version')} (#{artifact.get('id')})"
    created, refused = result["created"], result["refused"]
    offered = result.get("offered", 0)
    print(f"{label}: {len(created)} action(s) created, {offered} offered now")
    for action in created:
        print(
            f"  #{action['id']:<6} {action['terminal_id']:<20} {action['state']:<10} "
            f"deadline {_when(action['deadline'])}"
        )
    if created and offered < len(created):
        print("  (the broker did not answer: the central service offers the rest when it can)")
    for refusal in refused:
        print(f"  refused {refusal['terminal_id']}: {refusal['reason']}: {refusal['message']}")


@_guarded
def _cmd_actions(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_action_admin import list_local

    settings = load_central_settings(args.config)
    states = [s.strip() for s in args.state.split(",") if s.strip()]
    filters = {
        "states": states,
        "terminal_id": args.terminal,
        "artifact": args.artifact,
        "limit": max(1, min(args.limit, 500)),
    }

    def fetch() -> Any:
        return _run(args, lambda: list_local(settings, **filters), lambda api: api.list(**filters))

    body = fetch()
    if args.json and not args.watch:
        print(json.dumps(body))
        return 0
    if not args.watch:
        _console().print(_table(body))
        return 0
    return _watch(fetch, body, args.interval)


def _watch(fetch: Callable[[], Any], body: Any, interval: float) -> int:
    from rich.live import Live

    console = _console()
    try:
        with Live(_table(body), console=console, auto_refresh=False) as live:
            while not _all_final(body):
                time.sleep(max(0.2, interval))
                body = fetch()
                live.update(_table(body), refresh=True)
    except KeyboardInterrupt:
        return 130
    return 0


def _all_final(body: Any) -> bool:
    return all(item["state"] in FINAL for item in body["items"])


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 140)


def _table(body: Any) -> RenderableType:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    items = body["items"]
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("ID", "TERMINAL", "FIRMWARE", "STATE", "PROGRESS", "TRY", "UPDATED"):
        table.add_column(column, no_wrap=True)
    table.add_column("DEADLINE", no_wrap=True)
    table.add_column("DETAIL", overflow="fold")
    for a in items:
        state = Text(a["state"], style=_STYLE.get(a["state"], "yellow"))
        table.add_row(
            f"#{a['id']}",
            a["terminal_id"],
            f"{a['artifact_name']}@{a['artifact_version']}",
            state,
            _bar(a["progress"]) if a["state"] not in FINAL or a["progress"] else "",
            str(a["attempts"]),
            _when(a["updated_at"]),
            "" if a["state"] in FINAL else _until(a["deadline"]),
            a["detail"],
        )
    counts = body["counts"]
    shown = ", ".join(f"{state} {n}" for state, n in counts["by_state"].items() if n)
    summary = Text(
        f"{counts['total']} action(s), {counts['open']} open" + (f": {shown}" if shown else "")
    )
    if not items:
        return Group(summary, Text("no actions match; push one with posfleet firmware push"))
    return Group(table, summary)


def _bar(progress: float, width: int = 10) -> str:
    filled = round(max(0.0, min(progress, 1.0)) * width)
    return f"{'#' * filled}{'.' * (width - filled)} {progress * 100:3.0f}%"


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _when(text: str) -> str:
    return _parse(text).strftime("%Y-%m-%d %H:%M:%SZ")


def _until(text: str) -> str:
    seconds = int((_parse(text) - datetime.now(UTC)).total_seconds())
    if seconds <= 0:
        return "due now"
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours >= 48:
        return f"in {hours // 24}d {hours % 24}h"
    return f"in {hours}h {minutes:02d}m" if hours else f"in {minutes}m {secs:02d}s"


@_guarded
def _cmd_cancel(args: argparse.Namespace) -> int:
    from posfleet.central.firmware_action_admin import cancel_local

    settings = load_central_settings(args.config)
    cancelled = _run(
        args,
        lambda: cancel_local(settings, args.action_id, actor=_actor(), reason=args.reason),
        lambda api: api.cancel(args.action_id, reason=args.reason),
    )
    if args.json:
        print(json.dumps(cancelled))
    else:
        print(f"action #{cancelled['id']} on {cancelled['terminal_id']} cancelled")
        notice = cancelled.get("terminal_notice")
        if isinstance(notice, dict) and notice.get("text"):
            print(f"terminal: {notice['text']}")
    return 0
