"""``posfleet report <name>``: a report from the shell, as a table, JSON or CSV.

``posfleet report top-problems --from 2026-03-01 --to 2026-03-31 --format csv`` prints
what ``/api/v1/reports/top-problems`` answers, over the same period rules. The wear
limits come from the configured rule pack (built-in rules and ``rule_paths``). Heavy
modules are imported by the command, so that building the parser stays quick.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from posfleet.central.cli_diagnostics import _with_db
from posfleet.central.settings import CentralSettings, load_central_settings
from posfleet.contract import utcnow

if TYPE_CHECKING:
    from posfleet.diagnostics.rule_model import Rule
    from posfleet.reports.models import ReportBase

NAMES = ("top-problems", "response-times", "weekly-trend", "repeated-faults", "maintenance")
"""The reports (posfleet.reports.REPORT_NAMES, spelled here so --help imports nothing heavy)."""


def register(sub: Any) -> None:
    """Add ``posfleet report`` to the ``posfleet`` parser's subparsers."""
    p = sub.add_parser("report", help="a report over a period: top problems, MTTA/MTTR, trends")
    p.add_argument("name", choices=NAMES, help="which report")
    p.add_argument("--from", dest="start", metavar="DATE", help="first day (or ISO 8601 time)")
    p.add_argument("--to", dest="end", metavar="DATE", help="last day, inclusive (or a time)")
    p.add_argument("--preset", choices=("7d", "30d", "90d"), help="the period ending now (30d)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.add_argument("--top", type=int, default=10, help="top-problems: rows per dimension")
    p.add_argument("--min-incidents", type=int, default=3, help="repeated-faults: at least")
    p.add_argument("--near-percent", type=float, default=80.0, help="maintenance: wear from")
    p.add_argument(
        "--limit", type=int, default=100, help="most rows (repeated-faults, maintenance)"
    )
    p.set_defaults(func=_cmd_report)


def _count(raw: str) -> int:
    """A whole number from 1 to 1000, for argparse."""
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 1000:
        raise argparse.ArgumentTypeError(f"must be a whole number from 1 to 1000, not {raw!r}")
    return int(raw)


def _rules(settings: CentralSettings) -> list[Rule]:
    from posfleet.diagnostics.rule_files import (
        load_builtin_rules,
        load_rule_paths,
        merge_rule_sets,
    )

    sets = []
    if settings.diagnostics.builtin_rules:
        sets.append(load_builtin_rules())
    if settings.diagnostics.rule_paths:
        sets.append(load_rule_paths(settings.diagnostics.rule_paths))
    return merge_rule_sets(sets)


def _cell(value: Any) -> str:
    from datetime import UTC, date, datetime

    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def print_table(report: ReportBase) -> None:
    """The report's rows as aligned columns under their keys."""
    keys = list(report.row_model.model_fields)
    rows = [[_cell(getattr(row, key)) for key in keys] for row in report.row_list()]
    widths = [max([len(key), *(len(r[i]) for r in rows)]) for i, key in enumerate(keys)]
    print(f"{report.name}: {report.since:%Y-%m-%d %H:%M} .. {report.until:%Y-%m-%d %H:%M} UTC")
    print("  ".join(key.ljust(w) for key, w in zip(keys, widths, strict=True)).rstrip())
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    if not rows:
        print("(nothing over this period)")


def _cmd_report(args: argparse.Namespace) -> int:
    from posfleet.reports import PeriodError, ReportOptions, build_report, parse_period, to_csv

    settings = load_central_settings(args.config)
    try:
        period = parse_period(args.start, args.end, args.preset, now=utcnow())
    except PeriodError as exc:
        print(f"posfleet: error: --{exc.parameter}: {exc}", file=sys.stderr)
        return 2
    options = ReportOptions(
        top=args.top,
        min_incidents=args.min_incidents,
        near_percent=args.near_percent,
        limit=args.limit,
    )
    rules = _rules(settings) if args.name == "maintenance" else []

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            report = await build_report(
                conn, args.name, period, rules=rules, options=options, now=utcnow()
            )
        if args.format == "json":
            print(report.model_dump_json(indent=2))
        elif args.format == "csv":
            sys.stdout.write(to_csv(report))
        else:
            print_table(report)
        return 0

    return _with_db(args, work)
