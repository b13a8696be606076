"""``posfleet rollout ...``: fleet firmware updates in waves, from the command line.

``create`` makes a draft, ``preview`` shows which terminals go in which wave, roughly
when, and which are excluded and why; ``approve`` (the second person, when the policy
asks for one) and ``start`` set it going; ``pause``, ``resume``, ``abort`` and
``rollback`` steer it; ``list``, ``show`` and ``watch`` (live progress per wave) read it.
Every command that changes a rollout takes ``--reason-code`` and ``--reason``, which the
audit log keeps with the actor.

Each command works on this installation's database or, with ``--server URL``, through
the central service's API with the token in ``$POSFLEET_API_TOKEN``. Heavy modules
(SQLAlchemy, aiohttp, rich) are imported by the commands that run, so ``--help`` is quick.
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

from posfleet.central.rollout_text import (
    detail,
    list_table,
    preview_text,
    spec_text,
)
from posfleet.central.settings import load_central_settings

if TYPE_CHECKING:
    from posfleet.central.rollout_admin import RolloutApi

TOKEN_ENV = "POSFLEET_API_TOKEN"
REASON_CODES = ("security_fix", "bug_fix", "feature", "rollback", "other")
STEERING = ("approve", "start", "pause", "resume", "abort", "rollback")
"""The commands that change a rollout's state (besides create and preview)."""
_STEER_HELP = {
    "approve": "approve a rollout (the second approver, when its policy asks for one)",
    "start": "start a previewed (and, if needed, approved) rollout: the first wave goes out",
    "pause": "pause: no new offers; Actions under way finish",
    "resume": "resume a paused rollout where it stopped",
    "abort": "abort: no new offers, pending offers cancelled; updated terminals keep it",
    "rollback": "offer the previous version (signed to allow the downgrade) to the "
    "terminals already updated",
}


def register(sub: Any) -> None:
    """Add the ``rollout`` command group to the ``posfleet`` parser's subparsers."""
    ro = sub.add_parser(
        "rollout", help="fleet firmware updates in waves: create, preview, start, watch"
    ).add_subparsers(metavar="ACTION")

    p = ro.add_parser("create", help="create a draft rollout of an artifact (then: preview)")
    p.add_argument("name", help="a name people recognise, e.g. 'pos-os 5.3.0 Berlin'")
    p.add_argument("--artifact", required=True, help="id, name@version or SHA-256 prefix")
    p.add_argument(
        "--rollback-to",
        help="the artifact a roll back offers (default: the newest older version of the "
        "line signed to allow a downgrade)",
    )
    target = p.add_argument_group("target (every given criterion must hold; none: whole fleet)")
    target.add_argument("--models", help="comma-separated terminal models")
    target.add_argument("--merchants", help="comma-separated merchant ids")
    target.add_argument("--sites", help="comma-separated site ids")
    target.add_argument("--tags", help="comma-separated tags (any of them)")
    target.add_argument("--from-versions", help="comma-separated firmware versions now running")
    waves = p.add_argument_group("waves")
    waves.add_argument(
        "--waves",
        help="cumulative shares of the fleet, or a count first: 1%%,10%%,50%%,100%% (default) "
        "or 5,50%%,100%%",
    )
    waves.add_argument(
        "--success-threshold", help="share of a wave that must succeed to go on (95%%)"
    )
    waves.add_argument(
        "--error-threshold", help="share of a wave failing that pauses the rollout (10%%)"
    )
    waves.add_argument("--soak", help="time after a wave before the next one, e.g. 30m (30m)")
    waves.add_argument(
        "--abort-on-error", action="store_true", help="abort rather than pause at the threshold"
    )
    pace = p.add_argument_group("pace and window")
    pace.add_argument("--offers-per-minute", help="rate limit of new offers (60)")
    pace.add_argument("--jitter", help="random delay of each download, e.g. 30s (30s)")
    pace.add_argument(
        "--window", help="maintenance window, each terminal's local time (22:00-06:00)"
    )
    pace.add_argument("--weekdays", help="days the window opens, e.g. mon-fri (every day)")
    pace.add_argument("--deadline", help="how long each Action may take, e.g. 72h (72h)")
    pace.add_argument("--max-offline", help="exclude terminals unseen for longer (7d)")
    pace.add_argument(
        "--second-approver",
        action="store_true",
        help="a start needs the approval of someone other than the creator",
    )
    gate = p.add_argument_group("business-health gate (tolerated rise after each wave)")
    gate.add_argument("--gate-reader-errors", help="card-reader error rate, points (2)")
    gate.add_argument("--gate-declines", help="decline rate, points (2)")
    gate.add_argument("--gate-reboots", help="reboots per terminal (0.5)")
    gate.add_argument("--gate-min-terminals", help="updated terminals needed to judge (1)")
    _reason(p)
    _common(p)
    p.set_defaults(func=_cmd_create)

    p = ro.add_parser(
        "preview", help="dry run: which terminals in which wave, roughly when, who is excluded"
    )
    p.add_argument("rollout_id", type=int)
    p.add_argument("--limit", type=int, default=20, help="terminals listed per wave (20)")
    _common(p)
    p.set_defaults(func=_cmd_preview)

    for verb in STEERING:
        p = ro.add_parser(verb, help=_STEER_HELP[verb])
        p.add_argument("rollout_id", type=int)
        _reason(p, default="rollback" if verb == "rollback" else None)
        if verb == "rollback":
            p.add_argument("--to", help="the artifact to offer (default: as the rollout says)")
        _common(p)
        p.set_defaults(func=_cmd_steer, verb=verb)

    p = ro.add_parser("list", help="rollouts, newest first")
    p.add_argument("--state", default="", help="comma-separated states, e.g. running,paused")
    p.add_argument("--limit", type=int, default=50)
    _common(p)
    p.set_defaults(func=_cmd_list)

    p = ro.add_parser("show", help="one rollout: its policy, waves, gate figures, history")
    p.add_argument("rollout_id", type=int)
    _common(p)
    p.set_defaults(func=_cmd_show)

    p = ro.add_parser(
        "watch", help="live progress per wave while the rollout runs or is paused (Ctrl-C)"
    )
    p.add_argument("rollout_id", type=int)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between redraws (2)")
    _common(p)
    p.set_defaults(func=_cmd_watch)


def _reason(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument(
        "--reason-code",
        choices=REASON_CODES,
        required=default is None,
        default=default,
        help="why, as a code for the audit log" + (f" ({default})" if default else ""),
    )
    p.add_argument("--reason", default="", help="why, in words (needed with 'other')")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="JSON instead of text")
    p.add_argument(
        "--server",
        help=f"through this central service's API (token in ${TOKEN_ENV}); "
        "default: this installation's database",
    )


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _run(args: argparse.Namespace, call: Callable[[RolloutApi], Coroutine[Any, Any, Any]]) -> Any:
    """``call`` on this installation, or through the API with ``--server``."""
    from posfleet.central.rollout_admin import LocalRollouts, RemoteRollouts, RolloutAdminError

    if args.server:
        token = os.environ.get(TOKEN_ENV, "").strip()
        if not token:
            raise RolloutAdminError(
                f"set {TOKEN_ENV} to an API token (posfleet token create NAME --role ops)"
            )
        return asyncio.run(call(RemoteRollouts(args.server, token)))
    settings = load_central_settings(args.config)

    async def local() -> Any:
        async with LocalRollouts.open(settings, actor=_actor()) as api:
            return await call(api)

    return asyncio.run(local())


def _guarded(func: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from posfleet.central.rollout_admin import RolloutAdminError

        try:
            return func(args)
        except RolloutAdminError as exc:
            print(f"posfleet: error: {exc}", file=sys.stderr)
            return 1

    run.__doc__ = func.__doc__
    return run


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


@_guarded
def _cmd_create(args: argparse.Namespace) -> int:
    from posfleet.central.rollout_admin import RolloutAdminError
    from posfleet.dashboard.rollout_body import PolicyTexts, names, policy_json

    try:
        policy = policy_json(
            PolicyTexts(
                waves=args.waves,
                success_threshold=args.success_threshold,
                error_threshold=args.error_threshold,
                soak=args.soak,
                abort_on_error=args.abort_on_error,
                offers_per_minute=args.offers_per_minute,
                jitter=args.jitter,
                window=args.window,
                weekdays=args.weekdays,
                action_deadline=args.deadline,
                max_offline=args.max_offline,
                require_second_approver=args.second_approver,
                gate={
                    "reader_error_rate_points": args.gate_reader_errors,
                    "decline_rate_points": args.gate_declines,
                    "reboots_per_terminal": args.gate_reboots,
                    "min_terminals": args.gate_min_terminals,
                },
            )
        )
    except ValueError as exc:
        raise RolloutAdminError(str(exc)) from None
    body = {
        "name": args.name,
        "artifact": args.artifact,
        **({"rollback_artifact": args.rollback_to} if args.rollback_to else {}),
        "target": {
            "models": names(args.models),
            "merchant_ids": names(args.merchants),
            "site_ids": names(args.sites),
            "tags": names(args.tags),
            "firmware_versions": names(args.from_versions),
        },
        "policy": policy,
        "reason_code": args.reason_code,
        "reason": args.reason,
    }
    rollout = _run(args, lambda api: api.create(body))
    if args.json:
        _print_json(rollout)
        return 0
    print(
        f"rollout #{rollout['id']} {rollout['name']!r} created ({rollout['state']}): "
        f"{rollout['artifact']} to {rollout['target_text']}"
    )
    print(f"  waves: {', '.join(spec_text(w) for w in rollout['policy']['waves'])}")
    print(f"  next: posfleet rollout preview {rollout['id']}")
    return 0


@_guarded
def _cmd_preview(args: argparse.Namespace) -> int:
    preview = _run(args, lambda api: api.preview(args.rollout_id))
    if args.json:
        _print_json(preview)
        return 0
    _console().print(preview_text(preview, max(0, args.limit)))
    return 0


@_guarded
def _cmd_steer(args: argparse.Namespace) -> int:
    verb: str = args.verb
    body = {"reason_code": args.reason_code, "reason": args.reason}
    if getattr(args, "to", None):
        body["rollback_artifact"] = args.to
    rollout = _run(args, lambda api: api.command(args.rollout_id, verb, body))
    if args.json:
        _print_json(rollout)
        return 0
    done = {"approve": "approved", "start": "started", "pause": "paused", "resume": "resumed"}
    done |= {"abort": "aborted", "rollback": "rolled back", "request_approval": "sent for approval"}
    did = done.get(verb, verb)
    print(f"rollout #{rollout['id']} {rollout['name']!r} {did}: now {rollout['state']}")
    return 0


@_guarded
def _cmd_list(args: argparse.Namespace) -> int:
    states = [s.strip() for s in args.state.split(",") if s.strip()]
    body = _run(args, lambda api: api.list(states=states, limit=max(1, min(args.limit, 500))))
    if args.json:
        _print_json(body)
        return 0
    _console().print(list_table(body["items"]))
    return 0


@_guarded
def _cmd_show(args: argparse.Namespace) -> int:
    rollout = _run(args, lambda api: api.get(args.rollout_id))
    if args.json:
        _print_json(rollout)
        return 0
    _console().print(detail(rollout, history=True))
    return 0


@_guarded
def _cmd_watch(args: argparse.Namespace) -> int:
    from rich.live import Live

    def fetch() -> Any:
        return _run(args, lambda api: api.get(args.rollout_id))

    interval = max(0.2, args.interval)
    rollout = fetch()
    console = _console()
    try:
        if not console.is_terminal:
            return _watch_log(console, fetch, rollout, interval)
        with Live(detail(rollout), console=console, auto_refresh=False) as live:
            while not _watch_done(rollout):
                time.sleep(interval)
                rollout = fetch()
                live.update(detail(rollout), refresh=True)
    except KeyboardInterrupt:
        return 130
    return 0


def _watch_log(console: Any, fetch: Callable[[], Any], rollout: Any, interval: float) -> int:
    """``watch`` into a pipe or file: each changed picture once, stamped, as it happens."""
    shown = ""
    while True:
        with console.capture() as captured:
            console.print(detail(rollout))
        picture = captured.get()
        if picture != shown:
            stamp = datetime.now(UTC).strftime("%H:%M:%SZ")
            print(f"-- {stamp}\n{picture}", end="", flush=True)
            shown = picture
        if _watch_done(rollout):
            return 0
        time.sleep(interval)
        rollout = fetch()


def _watch_done(rollout: dict[str, Any]) -> bool:
    """Watching ends once the rollout has ended, or when it is not under way at all (a
    draft); a paused rollout is watched on, since someone may resume it."""
    return rollout["state"] not in ("running", "paused")


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)
