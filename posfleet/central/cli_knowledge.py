"""``posfleet kb search|show``: the knowledge base from the shell.

Searches built-in entries and this installation's articles by symptom words in English or
Chinese, as the dashboard does; ``--lang`` picks the language entries are printed in (the
other one where an article has none). Heavy modules are imported by the commands that run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from posfleet.central.errors import database_unusable
from posfleet.central.settings import load_central_settings

LANGUAGES = ("en", "zh_CN")


def register(sub: Any) -> None:
    """Add the ``kb`` command group to the ``posfleet`` parser's subparsers."""
    kb = sub.add_parser("kb", help="the fault knowledge base").add_subparsers(metavar="ACTION")
    p = kb.add_parser("search", help="entries matching symptom words (English or Chinese)")
    p.add_argument("query", help='what the merchant says, e.g. "打印机不出纸" or "card declined"')
    p.add_argument("--limit", type=int, default=10)
    p.add_argument("--lang", choices=LANGUAGES, default="en", help="language to print in")
    p.set_defaults(func=_cmd_search)
    p = kb.add_parser("show", help="one entry: symptoms, probable cause and steps")
    p.add_argument("entry_id", help="a built-in entry (printer.not_ready) or an article number")
    p.add_argument("--lang", choices=LANGUAGES, default="en", help="language to print in")
    p.set_defaults(func=_cmd_show)


def _with_library(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from babel import Locale
    from sqlalchemy.exc import SQLAlchemyError

    from posfleet.i18n import use_locale
    from posfleet.knowledge.library import KnowledgeLibrary
    from posfleet.store.engine import create_engine

    settings = load_central_settings(args.config)

    async def run() -> int:
        engine = create_engine(settings.resolved_database_url)
        try:
            with use_locale(Locale.parse(args.lang)):
                return await work(KnowledgeLibrary(engine))
        except SQLAlchemyError as exc:
            print(database_unusable(exc), file=sys.stderr)
            return 1
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _cmd_search(args: argparse.Namespace) -> int:
    from posfleet.knowledge.languages import reader_reads_chinese
    from posfleet.knowledge.search import MAX_QUERY

    if not args.query.strip() or len(args.query) > MAX_QUERY:
        print(f"posfleet: error: give 1 to {MAX_QUERY} characters to search for", file=sys.stderr)
        return 2

    async def work(library: Any) -> int:
        hits = await library.search(args.query, max(1, min(args.limit, 200)))
        if not hits:
            print("no entry matches")
            return 1
        for hit in hits:
            title = hit.entry.shown(reader_reads_chinese()).title
            print(f"{hit.entry.id:<28} {hit.score:>3}  {title}")
        return 0

    return _with_library(args, work)


def _cmd_show(args: argparse.Namespace) -> int:
    from posfleet.knowledge.languages import reader_reads_chinese

    async def work(library: Any) -> int:
        entry = await library.entry(args.entry_id) if len(args.entry_id) <= 96 else None
        if entry is None:
            print(f"posfleet: error: no knowledge entry {args.entry_id!r}", file=sys.stderr)
            return 1
        shown = entry.shown(reader_reads_chinese())
        print(f"{entry.id}: {shown.title}")
        if entry.rule_ids:
            print(f"  rules:    {', '.join(entry.rule_ids)}")
        print(f"  models:   {', '.join(entry.models) or 'all'}")
        if shown.symptoms:
            print(f"  symptoms: {'; '.join(shown.symptoms)}")
        if shown.cause:
            print(f"  cause:    {shown.cause}")
        print("  steps:")
        for number, step in enumerate(shown.steps, start=1):
            print(f"    {number}. {step}")
        return 0

    return _with_library(args, work)
