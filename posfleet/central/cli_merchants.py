"""``posfleet merchant import FILE.csv | list``: the merchants support staff call.

The CSV file has a header line naming its columns: ``merchant_id`` and any of ``name``,
``contact_name``, ``contact_phone``, ``city``; an empty cell leaves that field as it is.
An import is all or nothing: one bad line (named with its number) changes nothing.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from posfleet.central.cli_terminals import with_db

if TYPE_CHECKING:
    from posfleet.store.merchants import MerchantChange

COLUMNS = ("merchant_id", "name", "contact_name", "contact_phone", "city")


def register(sub: Any) -> None:
    """Add the ``merchant`` command group to the ``posfleet`` parser's subparsers."""
    merchant = sub.add_parser("merchant", help="merchants and their contacts").add_subparsers(
        metavar="ACTION"
    )
    p = merchant.add_parser("import", help="create or update merchants from a CSV file")
    p.add_argument("file", type=Path, metavar="FILE.csv")
    p.add_argument("--reason", default="", help="why (kept in the audit log)")
    p.set_defaults(func=_cmd_import)

    p = merchant.add_parser("list", help="merchants by id, with contact and phone")
    p.add_argument("--find", metavar="TEXT", help="only those found by TEXT (name, phone ...)")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    p.set_defaults(func=_cmd_list)


class MerchantFileError(ValueError):
    """The CSV file cannot be imported; the message names the line."""


def read_merchant_file(path: Path) -> list[tuple[str, MerchantChange]]:
    """Every line of ``path`` as (merchant id, change); a :class:`MerchantFileError` if bad."""
    import pydantic

    from posfleet.store.merchants import MerchantChange

    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        unknown = [name for name in header if name not in COLUMNS]
        if "merchant_id" not in header or unknown:
            raise MerchantFileError(
                f"{path}: the header must name merchant_id and any of {', '.join(COLUMNS[1:])}"
                + (f"; unknown: {', '.join(unknown)}" if unknown else "")
            )
        rows = []
        for line, record in enumerate(reader, start=2):
            merchant_id = (record.get("merchant_id") or "").strip()
            if not merchant_id or len(merchant_id) > 64:
                raise MerchantFileError(f"{path}:{line}: merchant_id must be 1 to 64 characters")
            given = {
                k: v.strip() for k, v in record.items() if k != "merchant_id" and v and v.strip()
            }
            try:
                rows.append((merchant_id, MerchantChange.model_validate(given)))
            except pydantic.ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise MerchantFileError(f"{path}:{line}: {field}: {first['msg']}") from None
    return rows


def _cmd_import(args: argparse.Namespace) -> int:
    from posfleet.store.accounts import record_audit
    from posfleet.store.merchants import import_merchants

    try:
        rows = read_merchant_file(args.file)
    except MerchantFileError as exc:
        print(f"posfleet: error: {exc}", file=sys.stderr)
        return 1
    actor = f"cli:{getpass.getuser()}"

    async def work(engine: Any) -> int:
        async with engine.begin() as conn:
            changed = await import_merchants(conn, rows, actor=actor)
            detail = {"file": str(args.file), "lines": len(rows), "changed": changed}
            await record_audit(conn, actor, "merchant.import", "", detail, args.reason)
        print(f"{len(rows)} merchants read, {changed} created or changed")
        return 0

    return with_db(args, work)


def _cmd_list(args: argparse.Namespace) -> int:
    from posfleet.store.merchants import list_merchants

    async def work(engine: Any) -> int:
        async with engine.connect() as conn:
            found = await list_merchants(conn, text=args.find, limit=args.limit)
        for m in found:
            if args.json:
                print(json.dumps(m.model_dump(mode="json"), ensure_ascii=False))
            else:
                print(f"{m.merchant_id:<12} {m.name or '-':<32} {m.contact_name or '-':<20} "
                      f"{m.contact_phone or '-':<18} {m.city or '-'}")  # fmt: skip
        if not found and not args.json:
            print("no merchants")
        return 0

    return with_db(args, work)
