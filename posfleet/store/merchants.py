"""Merchants: the trading name and the contact support staff call, by merchant id.

A merchant row appears when a terminal's inventory names its merchant; staff complete it
(contact, phone, city) by import or through the API. Once staff have named a merchant,
an inventory that still carries the old name no longer overwrites theirs.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Annotated, Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.store.schema import merchants, terminals
from posfleet.store.terminal_search import (
    MerchantText,
    matching_merchant_ids,
    phone_digits,
    refresh_merchant_terminals,
    search_text,
)
from posfleet.store.upsert import insert_for

MAX_PAGE = 500
INVENTORY = "inventory"
STAFF = "staff"


class MerchantRecord(pydantic.BaseModel):
    """One merchant as support reads it."""

    model_config = pydantic.ConfigDict(frozen=True)

    merchant_id: str
    name: str
    contact_name: str
    contact_phone: str
    city: str
    name_source: str
    """``inventory`` (named by its terminals) or ``staff`` (import or API)."""
    updated_at: datetime
    updated_by: str

    def search_fields(self) -> MerchantText:
        """What its terminals are also found by."""
        return MerchantText(self.name, self.contact_name, self.contact_phone, self.city)


class MerchantChange(pydantic.BaseModel):
    """What staff set on a merchant; a field left out keeps its value."""

    model_config = pydantic.ConfigDict(extra="forbid")

    name: Annotated[str, pydantic.Field(min_length=1, max_length=128)] | None = None
    contact_name: Annotated[str, pydantic.Field(max_length=128)] | None = None
    contact_phone: (
        Annotated[str, pydantic.Field(max_length=32, pattern=r"^[0-9 +()./-]*$")] | None
    ) = None
    city: Annotated[str, pydantic.Field(max_length=64)] | None = None


def merchant_search_text(
    merchant_id: str, name: str, contact_name: str, contact_phone: str, city: str
) -> str:
    """The folded text a merchant is found by; the phone by its digits."""
    return search_text(merchant_id, name, contact_name, phone_digits(contact_phone), city)


_COLUMNS = [merchants.c[name] for name in MerchantRecord.model_fields]


async def note_inventory_merchant(
    conn: AsyncConnection, merchant_id: str, name: str, *, now: datetime | None = None
) -> MerchantText:
    """Record the merchant a terminal's inventory names (a key lookup when nothing changed).

    Inserts an unknown merchant; renames one only while no staff member has named it,
    and only when the name differs, so the usual repeated inventory writes nothing.
    Returns the merchant's fields the terminal's search text takes.
    """
    now = now or utcnow()
    known = await get_merchant(conn, merchant_id)
    if known is None:
        stmt = insert_for(conn, merchants).values(
            merchant_id=merchant_id,
            name=name,
            search_text=merchant_search_text(merchant_id, name, "", "", ""),
            name_source=INVENTORY,
            updated_at=now,
            updated_by=INVENTORY,
        )
        await conn.execute(stmt.on_conflict_do_nothing(index_elements=["merchant_id"]))
        return MerchantText(name=name)
    if not name or known.name == name or known.name_source != INVENTORY:
        return known.search_fields()
    text = merchant_search_text(
        merchant_id, name, known.contact_name, known.contact_phone, known.city
    )
    await conn.execute(
        merchants.update()
        .where(merchants.c.merchant_id == merchant_id, merchants.c.name_source == INVENTORY)
        .values(name=name, search_text=text, updated_at=now, updated_by=INVENTORY)
    )
    return MerchantText(name, known.contact_name, known.contact_phone, known.city)


async def get_merchant(conn: AsyncConnection, merchant_id: str) -> MerchantRecord | None:
    """One merchant, or None."""
    row = (
        await conn.execute(sa.select(*_COLUMNS).where(merchants.c.merchant_id == merchant_id))
    ).first()
    return None if row is None else MerchantRecord.model_validate(dict(row._mapping))


async def update_merchant(
    conn: AsyncConnection,
    merchant_id: str,
    change: MerchantChange,
    *,
    actor: str,
    now: datetime | None = None,
) -> tuple[MerchantRecord | None, MerchantRecord]:
    """Apply staff's ``change`` (creating the merchant if needed); return (before, after)."""
    now = now or utcnow()
    before = await get_merchant(conn, merchant_id)
    given = change.model_dump(exclude_none=True)
    fields = {
        "name": before.name if before else "",
        "contact_name": before.contact_name if before else "",
        "contact_phone": before.contact_phone if before else "",
        "city": before.city if before else "",
        **given,
    }
    source = STAFF if "name" in given else (before.name_source if before else INVENTORY)
    values: dict[str, Any] = {
        **fields,
        "search_text": merchant_search_text(merchant_id, **fields),
        "name_source": source,
        "updated_at": now,
        "updated_by": actor,
    }
    if before is None:
        await conn.execute(merchants.insert().values(merchant_id=merchant_id, **values))
    else:
        await conn.execute(
            merchants.update().where(merchants.c.merchant_id == merchant_id).values(**values)
        )
    after = await get_merchant(conn, merchant_id)
    assert after is not None
    if before is None or before.search_fields() != after.search_fields():
        await refresh_merchant_terminals(conn, merchant_id, after.search_fields())
    return before, after


async def import_merchants(
    conn: AsyncConnection, rows: Sequence[tuple[str, MerchantChange]], *, actor: str
) -> int:
    """Create or update each ``(merchant_id, change)``; return how many changed."""
    changed = 0
    for merchant_id, change in rows:
        before, after = await update_merchant(conn, merchant_id, change, actor=actor)
        if before is None or before.model_dump(exclude={"updated_at", "updated_by"}) != (
            after.model_dump(exclude={"updated_at", "updated_by"})
        ):
            changed += 1
    return changed


async def list_merchants(
    conn: AsyncConnection,
    *,
    text: str | None = None,
    limit: int = 100,
    after: str | None = None,
) -> list[MerchantRecord]:
    """A page of merchants by id; ``text`` narrows to those found by it (as the search)."""
    m = merchants.c
    query = sa.select(*_COLUMNS).order_by(m.merchant_id)
    if text:
        query = query.where(m.merchant_id.in_(matching_merchant_ids(text)))
    if after is not None:
        query = query.where(m.merchant_id > after)
    rows = (await conn.execute(query.limit(max(1, min(limit, MAX_PAGE + 1))))).all()
    return [MerchantRecord.model_validate(dict(row._mapping)) for row in rows]


async def terminal_counts(conn: AsyncConnection, merchant_ids: Collection[str]) -> dict[str, int]:
    """How many terminals each of ``merchant_ids`` has, in one query."""
    if not merchant_ids:
        return {}
    t = terminals.c
    query = (
        sa.select(t.merchant_id, sa.func.count())
        .where(t.merchant_id.in_(list(merchant_ids)))
        .group_by(t.merchant_id)
    )
    return {str(mid): int(count) for mid, count in await conn.execute(query)}
