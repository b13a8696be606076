"""``posfleet incidents ...`` and ``posfleet rules check``: diagnostics from the shell.

The heavy modules (SQLAlchemy, the CEL library) are imported by the commands that need
them, so that building the parser keeps ``posfleet --help`` quick.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posfleet.central.settings import CentralSettings, load_central_settings
from posfleet.contract import utcnow

if TYPE_CHECKING:
    import pydantic

    from posfleet.diagnostics.analytics import IncidentAnalytics
    from posfleet.store.incidents import IncidentRecord

BUCKETS = ("hour", "day")
STATES = ("open", "acknowledged", "resolved")


def register(sub: Any) -> None:
    """Add the ``incidents`` and ``rules`` commands to the ``posfleet`` parser's subparsers."""
    incidents = sub.add_parser("incidents", help="diagnostic incidents").add_subparsers(
        metavar="ACTION"
    )
    p = incidents.add_parser("list", help="unresolved incidents, newest first")
    p.add_argument("--state", default="open,acknowledged", help="comma-separated states")
    p.add_argument("--all", action="store_true", help="every state, resolved included")
    p.add_argument("--terminal", help="only this terminal")
    p.add_argument("--rule", help="only this rule id")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_cmd_list)

    p = incidents.add_parser("show", help="one incident with its cause, remedy and timeline")
    p.add_argument("incident_id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_show)

    p = incidents.add_parser("ack", help="acknowledge an open incident")
    p.add_argument("incident_id", type=int)
    p.set_defaults(func=_cmd_ack)

    p = incidents.add_parser("resolve", help="resolve an incident by hand")
    p.add_argument("incident_id", type=int)
    p.add_argument("--resolution", default="", help="how it was fixed")
    p.set_defaults(func=_cmd_resolve)

    p = incidents.add_parser("stats", help="incidents by rule, model, firmware, site; MTTA/MTTR")
    p.add_argument("--days", type=float, default=30.0, help="look back this many days (30)")
    p.add_argument("--bucket", choices=BUCKETS, default="day")
    p.add_argument("--top", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_stats)

    rules = sub.add_parser("rules", help="diagnostic rule files").add_subparsers(metavar="ACTION")
    p = rules.add_parser("check", help="check rule files; exit 1 with file, line and reason")
    p.add_argument("files", type=Path, nargs="+", metavar="FILE")
    p.set_defaults(func=_cmd_rules_check)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _with_db(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from posfleet.diagnostics.errors import DiagnosticsError
    from posfleet.store.engine import create_engine

    settings: CentralSettings = load_central_settings(args.config)

    async def run() -> int:
        url = settings.resolved_database_url
        engine = create_engine(url)
        try:
            return await work(engine)
        except DiagnosticsError as exc:
            print(f"posfleet: error: {exc}", file=sys.stderr)
            return 1
        except SQLAlchemyError as exc:
            # Most often a var dir nobody set up yet: no database file, or no tables.
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            print(
                f"posfleet: error: cannot read the database {engine.url.render_as_string()}: "
                f"{reason}; create or migrate it with 'posfleet db upgrade'",
                file=sys.stderr,
            )
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _dump(model: pydantic.BaseModel) -> str:
    return model.model_dump_json()


def _line(incident: IncidentRecord) -> str:
    who = incident.terminal_id or f"fleet {incident.correlation}"
    opened = incident.opened_at.strftime("%Y-%m-%d %H:%M")
    return (
        f"#{incident.id:<6} {incident.state.value:<12} {incident.severity:<8} "
        f"{opened}  {who:<24} {incident.title}"
    )


def _cmd_list(args: argparse.Namespace) -> int:
    from posfleet.store.incidents import IncidentState, list_incidents

    wanted = [s for s in args.state.split(",") if s]
    if any(s not in STATES for s in wanted):
        print(f"posfleet: error: --state takes {', '.join(STATES)}", file=sys.stderr)
        return 2
    states = None if args.all else [IncidentState(s) for s in wanted]

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await list_incidents(
                conn,
                states=states,
                terminal_id=args.terminal,
                rule_id=args.rule,
                limit=args.limit,
            )
        for incident in found:
            print(_dump(incident) if args.json else _line(incident))
        if not found and not args.json:
            print("no incidents")
        return 0

    return _with_db(args, work)


def _cmd_show(args: argparse.Namespace) -> int:
    from posfleet.store.incidents import get_incident, list_notes

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            incident = await get_incident(conn, args.incident_id)
            notes = await list_notes(conn, args.incident_id) if incident else []
        if incident is None:
            print(f"posfleet: error: no incident #{args.incident_id}", file=sys.stderr)
            return 1
        if args.json:
            print(
                json.dumps(
                    {
                        "incident": incident.model_dump(mode="json"),
                        "notes": [n.model_dump(mode="json") for n in notes],
                    }
                )
            )
            return 0
        print(_line(incident))
        print(f"  rule:        {incident.rule_id}   escalation: {incident.escalation}")
        where = [("site", incident.site_id), ("merchant", incident.merchant_id)]
        if any(value for _, value in where):
            print(f"  where:       {', '.join(f'{k} {v}' for k, v in where if v)}")
        print(f"  cause:       {incident.cause}")
        print("  remedy:")
        for number, step in enumerate(incident.remedy, start=1):
            print(f"    {number}. {step}")
        if incident.facts:
            print(f"  facts:       {json.dumps(incident.facts)}")
        for note in notes:
            print(f"  {note.ts:%Y-%m-%d %H:%M} {note.author} [{note.kind}] {note.text}")
        return 0

    return _with_db(args, work)


def _cmd_ack(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.incident_actions import IncidentActions

    async def work(engine: Any) -> int:
        record = await IncidentActions(engine).acknowledge(args.incident_id, actor=_actor())
        print(_line(record))
        return 0

    return _with_db(args, work)


def _cmd_resolve(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.incident_actions import IncidentActions

    async def work(engine: Any) -> int:
        actions = IncidentActions(engine)
        record = await actions.resolve(args.incident_id, actor=_actor(), resolution=args.resolution)
        print(_line(record))
        return 0

    return _with_db(args, work)


def _format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return str(timedelta(seconds=round(seconds)))


def _print_stats(report: IncidentAnalytics) -> None:
    print(
        f"incidents opened {report.since:%Y-%m-%d} .. {report.until:%Y-%m-%d}: "
        f"{report.total} ({report.unresolved} unresolved)"
    )
    print(
        f"mean time to acknowledge: {_format_duration(report.mtta_s)}   "
        f"mean time to resolve: {_format_duration(report.mttr_s)}"
    )
    print("top problems:")
    for row in report.top:
        print(f"  {row.count:>6}  {row.key}")
    for name, rows in report.by.items():
        if name == "rule":
            continue
        print(f"by {name}:")
        for row in rows:
            print(f"  {row.count:>6}  {row.key or '(unknown)'}")
    print(f"per {report.bucket.value}:")
    for bucket in report.buckets:
        print(f"  {bucket.start}  {bucket.count}")


def _cmd_stats(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.analytics import Bucket, incident_analytics

    async def work(engine: Any) -> int:
        until = utcnow()
        async with engine.connect() as conn:
            report = await incident_analytics(
                conn,
                since=until - timedelta(days=args.days),
                until=until,
                bucket=Bucket(args.bucket),
                top=args.top,
            )
        if args.json:
            print(_dump(report))
        else:
            _print_stats(report)
        return 0

    return _with_db(args, work)


def _cmd_rules_check(args: argparse.Namespace) -> int:
    from posfleet.diagnostics.errors import DiagnosticsError
    from posfleet.diagnostics.rule_files import load_rule_file

    failed = 0
    for path in args.files:
        try:
            rules = load_rule_file(path)
        except DiagnosticsError as exc:
            print(f"{exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{path}: ok, {len(rules)} rules ({', '.join(r.id for r in rules)})")
    return 1 if failed else 0
