"""Finding terminals by what a merchant on the phone can tell: any part of an id, serial,
merchant name or id, site, or the contact's phone number.

Each terminal has one narrow ``terminal_search`` row holding its case-folded search text
(its own fields and its merchant's), and each merchant a ``search_text`` column for the
merchant list; a query is one substring test (``LIKE '%part%'``, ``instr()`` on SQLite). On
PostgreSQL pg_trgm GIN indexes answer that from the index; on SQLite the scan reads a few
bytes per terminal rather than the wide registry row (see bench/dashboard.py for both).

Text is folded in Python (``str.casefold``), not by the database, so ``Ä`` finds ``ä`` and
Chinese names compare as written on both backends; ``LIKE`` then compares folded text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler

from posfleet.store.schema import merchants, terminal_search, terminals
from posfleet.store.upsert import insert_for

SEPARATOR = "\n"
"""Between the fields of a search text: nobody types it, so no match spans two fields."""

_PHONE_CHARACTERS = re.compile(r"[\d\s+()./-]+")
MIN_PHONE_DIGITS = 3
"""A query of digits (and phone punctuation) with at least this many is also a phone part."""


def fold(text: str) -> str:
    """``text`` as search compares it: case-folded, inner whitespace kept single."""
    return " ".join(text.casefold().split())


def phone_digits(phone: str) -> str:
    """Only the digits of a phone number: ``+49 30 1234-5`` -> ``493012345``."""
    return "".join(ch for ch in phone if ch.isdigit())


def search_text(*parts: str | None) -> str:
    """The folded search text of the given fields (empty ones left out)."""
    return SEPARATOR.join(fold(part) for part in parts if part and part.strip())


def query_parts(text: str) -> list[str]:
    """The folded texts a search for ``text`` looks for: itself, and a phone's digits."""
    folded = fold(text)
    if not folded:
        return []
    parts = [folded]
    digits = phone_digits(folded)
    if _PHONE_CHARACTERS.fullmatch(folded) and len(digits) >= MIN_PHONE_DIGITS and digits != folded:
        parts.append(digits)
        # Dictated numbers start with a trunk 0 (030 ...) or 00 where the stored one has
        # +49 30 ...: match the digits after that prefix too.
        national = digits[2:] if digits.startswith("00") else digits[1:]
        if digits.startswith("0") and len(national) >= MIN_PHONE_DIGITS:
            parts.append(national)
    return parts


class ContainsFolded(sa.ColumnElement[bool]):
    """``column`` holds ``part`` as written; both are folded already.

    PostgreSQL compiles it to ``LIKE '%part%'``, which its pg_trgm index answers. SQLite
    has no such index and scans, and there ``instr()`` is about three times faster than
    ``LIKE`` with an escape character (measured over 100,000 search rows with Chinese
    text: 21 against 57 ms); the folding in Python already made case irrelevant.
    """

    type = sa.Boolean()
    inherit_cache = False

    def __init__(self, column: sa.ColumnElement[str], part: str) -> None:
        self.column = column
        self.part = part


@compiles(ContainsFolded)
def _contains_as_like(element: ContainsFolded, compiler: SQLCompiler, **kw: Any) -> str:
    escaped = element.part.replace("/", "//").replace("%", "/%").replace("_", "/_")
    return compiler.process(element.column.like(f"%{escaped}%", escape="/"), **kw)


@compiles(ContainsFolded, "sqlite")
def _contains_as_instr(element: ContainsFolded, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(sa.func.instr(element.column, element.part) > 0, **kw)


def _matches(column: sa.ColumnElement[str], parts: list[str]) -> sa.ColumnElement[bool]:
    return sa.or_(*(ContainsFolded(column, part) for part in parts))


def matching_merchant_ids(text: str) -> sa.Select[Any]:
    """The ids of the merchants whose id, name, contact, city or phone contain ``text``."""
    return sa.select(merchants.c.merchant_id).where(
        _matches(merchants.c.search_text, query_parts(text))
    )


def text_condition(text: str, *, counting: bool = False) -> sa.ColumnElement[bool]:
    """``terminals`` rows whose search text contains ``text``.

    A terminal's search text holds its merchant's contact, phone and city too, so one
    narrow table (or one trigram index) answers every kind of search. For a page the
    condition joins ``terminal_search`` by key rather than asking ``terminal_id IN
    (...)``: the page then stops after its last row instead of collecting every match
    first. A count (``counting``) reads every match anyway, and there the ``IN`` form
    is the faster: SQLite scans the narrow search rows once and looks up only the
    matching terminals, where the join looked up a search row for every terminal (23
    against 52 ms at 100,000 terminals).
    """
    parts = query_parts(text)
    if not parts:
        return sa.true()
    if counting:
        found = sa.select(terminal_search.c.terminal_id).where(
            _matches(terminal_search.c.search_text, parts)
        )
        return terminals.c.terminal_id.in_(found)
    return sa.and_(
        terminal_search.c.terminal_id == terminals.c.terminal_id,
        _matches(terminal_search.c.search_text, parts),
    )


@dataclass(frozen=True, slots=True)
class MerchantText:
    """What a terminal's search text takes from its merchant's record."""

    name: str = ""
    contact_name: str = ""
    contact_phone: str = ""
    city: str = ""

    def parts(self) -> tuple[str, ...]:
        """The merchant's fields as searched (the phone by its digits)."""
        return (self.name, self.contact_name, phone_digits(self.contact_phone), self.city)


@dataclass(frozen=True, slots=True)
class TerminalText:
    """What a terminal's search text takes from its inventory."""

    terminal_id: str
    serial: str | None = None
    model: str | None = None
    merchant_id: str | None = None
    merchant_name: str = ""
    site_id: str | None = None
    site_name: str = ""

    def text(self, merchant: MerchantText) -> str:
        """The folded search text of this terminal and its merchant."""
        own = (self.terminal_id, self.serial, self.model, self.merchant_id, self.merchant_name)
        return search_text(*own, self.site_id, self.site_name, *merchant.parts())


async def store_terminal_search(
    conn: AsyncConnection, terminal: TerminalText, merchant: MerchantText | None = None
) -> None:
    """Write the terminal's search row from its latest inventory and its merchant."""
    text = terminal.text(merchant or MerchantText())
    stmt = insert_for(conn, terminal_search).values(
        terminal_id=terminal.terminal_id,
        merchant_name=terminal.merchant_name,
        site_name=terminal.site_name,
        search_text=text,
    )
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[terminal_search.c.terminal_id],
        set_={"merchant_name": new.merchant_name, "site_name": new.site_name, "search_text": text},
        # A repeated inventory (every reconnect) writes nothing.
        where=terminal_search.c.search_text != new.search_text,
    )
    await conn.execute(stmt)


async def refresh_merchant_terminals(
    conn: AsyncConnection, merchant_id: str, merchant: MerchantText
) -> int:
    """Rewrite the search rows of the merchant's terminals after staff changed it."""
    t, s = terminals.c, terminal_search.c
    query = (
        sa.select(t.terminal_id, t.serial, t.model, t.site_id, s.merchant_name, s.site_name)
        .join_from(terminals, terminal_search, s.terminal_id == t.terminal_id)
        .where(t.merchant_id == merchant_id)
    )
    rows = []
    for r in await conn.execute(query):
        fields = TerminalText(
            r.terminal_id, r.serial, r.model, merchant_id, r.merchant_name, r.site_id, r.site_name
        )
        rows.append({"tid": r.terminal_id, "text": fields.text(merchant)})
    if rows:
        await conn.execute(
            terminal_search.update()
            .where(s.terminal_id == sa.bindparam("tid"))
            .values(search_text=sa.bindparam("text")),
            rows,
        )
    return len(rows)


async def ensure_terminal_search(conn: AsyncConnection, terminal_id: str) -> None:
    """Give a terminal known only by its id (no inventory yet) a search row."""
    stmt = insert_for(conn, terminal_search).values(
        terminal_id=terminal_id, search_text=search_text(terminal_id)
    )
    await conn.execute(stmt.on_conflict_do_nothing(index_elements=["terminal_id"]))
