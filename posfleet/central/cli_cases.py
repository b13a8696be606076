"""``posfleet case open|list|show|note|link|close``: merchant cases from the shell.

Each command works on this installation's database as ``cli:<login name>``, through the
same staff actions as the dashboard (:class:`posfleet.helpdesk.CaseDesk`), so the
audit log and the case's timeline read alike. Heavy modules are imported by the
commands that run, so ``posfleet --help`` stays quick.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from typing import TYPE_CHECKING, Any

from posfleet.central.errors import database_unusable
from posfleet.central.settings import load_central_settings

if TYPE_CHECKING:
    from posfleet.store.cases import CaseRecord

CHANNELS = ("phone", "email", "walk_in", "chat")
CATEGORIES = ("card_reader", "printer", "network", "payments", "hardware", "software", "other")
PRIORITIES = ("low", "normal", "high", "urgent")
LINK_KINDS = {"incident": "incident", "command": "command", "run": "playbook_run"}


def register(sub: Any) -> None:
    """Add the ``case`` command group to the ``posfleet`` parser's subparsers."""
    case = sub.add_parser("case", help="merchant cases (complaint follow-up)").add_subparsers(
        metavar="ACTION"
    )
    p = case.add_parser("open", help="open a case for a merchant's call")
    p.add_argument("--merchant", required=True, help="the merchant's id")
    p.add_argument("--terminal", action="append", default=[], help="a terminal id (repeatable)")
    p.add_argument("--complaint", required=True, help="the complaint in the merchant's words")
    p.add_argument("--subject", help="a short subject (default: the complaint's start)")
    p.add_argument("--channel", choices=CHANNELS, default="phone")
    p.add_argument("--category", choices=CATEGORIES, default="other")
    p.add_argument("--priority", choices=PRIORITIES, default="normal")
    p.add_argument("--follow-up", type=date.fromisoformat, help="YYYY-MM-DD")
    p.set_defaults(func=_cmd_open)

    p = case.add_parser("list", help="cases not closed, newest first")
    p.add_argument("--state", help="comma-separated states, or all")
    p.add_argument("--due", choices=("due_today", "overdue", "due"), help="follow-ups due")
    p.add_argument("--terminal", help="only this terminal's cases")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=_cmd_list)

    p = case.add_parser("show", help="one case with its links and timeline")
    p.add_argument("case_id", type=int)
    p.set_defaults(func=_cmd_show)

    p = case.add_parser("note", help="add a note to a case")
    p.add_argument("case_id", type=int)
    p.add_argument("text")
    p.set_defaults(func=_cmd_note)

    p = case.add_parser("link", help="link an incident, a remote command or a playbook run")
    p.add_argument("case_id", type=int)
    p.add_argument("kind", choices=sorted(LINK_KINDS))
    p.add_argument("ref", help="the incident's, command's or run's id")
    p.set_defaults(func=_cmd_link)

    p = case.add_parser("close", help="close a case once the merchant confirms")
    p.add_argument("case_id", type=int)
    p.add_argument("--confirmation", required=True, help="who confirmed, and how")
    p.set_defaults(func=_cmd_close)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _with_db(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from posfleet.helpdesk import HelpdeskError
    from posfleet.store.engine import create_engine

    settings = load_central_settings(args.config)

    async def run() -> int:
        engine = create_engine(settings.resolved_database_url)
        try:
            return await work(engine)
        except HelpdeskError as exc:
            print(f"posfleet: error: {exc}", file=sys.stderr)
            return 1
        except SQLAlchemyError as exc:
            print(database_unusable(exc), file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _line(case: CaseRecord) -> str:
    follow = f" follow-up {case.follow_up_on.isoformat()}" if case.follow_up_on else ""
    terminals = ",".join(case.terminal_ids) or "-"
    return (
        f"#{case.id:<5} {case.state.value:<16} {case.priority.value:<7} {case.merchant_id:<12} "
        f"{terminals:<14} {case.subject}{follow}"
    )


def _cmd_open(args: argparse.Namespace) -> int:
    from posfleet.helpdesk import CaseDesk
    from posfleet.store.cases import CaseCategory, CaseChannel, CaseDraft, CasePriority

    draft = CaseDraft(
        merchant_id=args.merchant,
        subject=args.subject or args.complaint[:80],
        complaint=args.complaint,
        channel=CaseChannel(args.channel),
        category=CaseCategory(args.category),
        priority=CasePriority(args.priority),
        terminal_ids=args.terminal,
        follow_up_on=args.follow_up,
    )

    async def work(engine: Any) -> int:
        case = await CaseDesk(engine).open(draft, actor=_actor())
        print(f"opened case #{case.id}")
        return 0

    return _with_db(args, work)


def _cmd_list(args: argparse.Namespace) -> int:
    from posfleet.dashboard.case_api_models import CaseListQuery
    from posfleet.dashboard.cases_api import case_filter
    from posfleet.store.cases import list_cases

    query = CaseListQuery(
        state=args.state, follow_up=args.due, terminal_id=args.terminal, limit=args.limit
    )

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await list_cases(conn, case_filter(query), limit=args.limit)
        for case in found:
            print(_line(case))
        if not found:
            print("no case matches")
        return 0

    return _with_db(args, work)


def _cmd_show(args: argparse.Namespace) -> int:
    from posfleet.dashboard.case_views import linked_objects
    from posfleet.store.cases import get_case, list_case_links, list_case_notes

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            case = await get_case(conn, args.case_id)
            if case is None:
                print(f"posfleet: error: no case #{args.case_id}", file=sys.stderr)
                return 1
            notes = await list_case_notes(conn, case.id)
            links = await linked_objects(conn, await list_case_links(conn, case.id))
        print(_line(case))
        print(f"  complaint: {case.complaint}")
        if case.merchant_confirmation:
            print(f"  merchant's confirmation: {case.merchant_confirmation}")
        for item in links:
            print(f"  linked {item.link.kind.value} {item.link.ref}: {item.title} ({item.state})")
        for note in notes:
            stamp = note.ts.strftime("%Y-%m-%d %H:%MZ")
            print(f"  {stamp} {note.author} {note.kind}: {note.text}")
        return 0

    return _with_db(args, work)


def _cmd_note(args: argparse.Namespace) -> int:
    from posfleet.helpdesk import CaseDesk

    async def work(engine: Any) -> int:
        await CaseDesk(engine).add_note(args.case_id, args.text, actor=_actor())
        print(f"noted on case #{args.case_id}")
        return 0

    return _with_db(args, work)


def _cmd_link(args: argparse.Namespace) -> int:
    from posfleet.helpdesk import CaseDesk
    from posfleet.store.cases import CaseLinkKind

    async def work(engine: Any) -> int:
        kind = CaseLinkKind(LINK_KINDS[args.kind])
        _, created = await CaseDesk(engine).link(args.case_id, kind, args.ref, actor=_actor())
        print(f"{'linked' if created else 'already linked'}: {args.kind} {args.ref}")
        return 0

    return _with_db(args, work)


def _cmd_close(args: argparse.Namespace) -> int:
    from posfleet.helpdesk import CaseDesk
    from posfleet.store.cases import CaseState

    async def work(engine: Any) -> int:
        await CaseDesk(engine).change_state(
            args.case_id, CaseState.CLOSED, actor=_actor(), confirmation=args.confirmation
        )
        print(f"closed case #{args.case_id}")
        return 0

    return _with_db(args, work)
