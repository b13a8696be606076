"""Merchant cases, their terminals, timeline and links: the repository functions.

A case follows one merchant's complaint until the merchant confirms it is settled.
The rules of its life (which state may follow which, what closing needs, when a
follow-up is due) are :mod:`posfleet.helpdesk`'s; this module only keeps the rows. Every
function takes an open connection and leaves the transaction to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import case_links, case_notes, case_terminals, cases
from posfleet.store.upsert import insert_for

MAX_PAGE = 500
"""Largest page :func:`list_cases` returns."""


class CaseState(StrEnum):
    """Where a case is; ``closed`` is final."""

    OPEN = "open"
    WAITING_MERCHANT = "waiting_merchant"
    WAITING_ONSITE = "waiting_onsite"
    RESOLVED = "resolved"
    CLOSED = "closed"


ACTIVE_STATES = (
    CaseState.OPEN,
    CaseState.WAITING_MERCHANT,
    CaseState.WAITING_ONSITE,
    CaseState.RESOLVED,
)
"""Every state but closed: a resolved case still waits for the merchant's word."""


class CaseChannel(StrEnum):
    """How the merchant reached the helpdesk."""

    PHONE = "phone"
    EMAIL = "email"
    WALK_IN = "walk_in"
    CHAT = "chat"


class CaseCategory(StrEnum):
    """What the complaint is about, for reports."""

    CARD_READER = "card_reader"
    PRINTER = "printer"
    NETWORK = "network"
    PAYMENTS = "payments"
    HARDWARE = "hardware"
    SOFTWARE = "software"
    OTHER = "other"


class CasePriority(StrEnum):
    """How urgent the merchant's problem is."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class CaseLinkKind(StrEnum):
    """What a case may be linked to."""

    INCIDENT = "incident"
    COMMAND = "command"
    """A remote command run on a terminal (its CommandId)."""
    PLAYBOOK_RUN = "playbook_run"


class CaseRecord(pydantic.BaseModel):
    """A case as staff and the API see it."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    merchant_id: str
    subject: str
    complaint: str
    channel: CaseChannel
    category: CaseCategory
    priority: CasePriority
    state: CaseState
    caller_name: str
    caller_phone: str
    assignee: str | None
    opened_by: str
    opened_at: datetime
    updated_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    merchant_confirmation: str | None
    follow_up_on: date | None
    follow_up_note: str
    terminal_ids: list[str]


class CaseNote(pydantic.BaseModel):
    """One entry of a case's timeline: a staff note, a state change, a link, a follow-up."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    case_id: int
    ts: datetime
    author: str
    kind: str
    text: str
    detail: dict[str, Any]


class CaseLink(pydantic.BaseModel):
    """A case's link to an incident, a remote command or a playbook run."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    case_id: int
    kind: CaseLinkKind
    ref: str
    linked_by: str
    linked_at: datetime


@dataclass(frozen=True, slots=True)
class CaseDraft:
    """What a new case is opened with."""

    merchant_id: str
    subject: str
    complaint: str
    channel: CaseChannel
    category: CaseCategory
    priority: CasePriority = CasePriority.NORMAL
    terminal_ids: Sequence[str] = ()
    caller_name: str = ""
    caller_phone: str = ""
    assignee: str | None = None
    follow_up_on: date | None = None


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Which cases a list shows; every given criterion must hold."""

    states: Sequence[CaseState] | None = None
    assignee: str | None = None
    merchant_id: str | None = None
    terminal_id: str | None = None
    follow_up_from: date | None = None
    """Follow-up on or after this day."""
    follow_up_to: date | None = None
    """Follow-up on or before this day (today: due today or overdue)."""


_CASE_COLUMNS = [cases.c[name] for name in CaseRecord.model_fields if name != "terminal_ids"]


async def _terminals_of(conn: AsyncConnection, case_ids: Iterable[int]) -> dict[int, list[str]]:
    ids = list(case_ids)
    found: dict[int, list[str]] = {i: [] for i in ids}
    if not ids:
        return found
    rows = await conn.execute(
        sa.select(case_terminals.c.case_id, case_terminals.c.terminal_id)
        .where(case_terminals.c.case_id.in_(ids))
        .order_by(case_terminals.c.case_id, case_terminals.c.terminal_id)
    )
    for case_id, terminal_id in rows:
        found[case_id].append(terminal_id)
    return found


async def _records(conn: AsyncConnection, query: sa.Select[Any]) -> list[CaseRecord]:
    rows = list(await conn.execute(query))
    terminals = await _terminals_of(conn, (r.id for r in rows))
    return [
        CaseRecord.model_validate({**r._mapping, "terminal_ids": terminals[r.id]}) for r in rows
    ]


async def insert_case(
    conn: AsyncConnection, draft: CaseDraft, *, opened_by: str, now: datetime
) -> int:
    """Store a new open case; its id."""
    result = await conn.execute(
        sa.insert(cases)
        .values(
            merchant_id=draft.merchant_id,
            subject=draft.subject,
            complaint=draft.complaint,
            channel=draft.channel.value,
            category=draft.category.value,
            priority=draft.priority.value,
            state=CaseState.OPEN.value,
            caller_name=draft.caller_name,
            caller_phone=draft.caller_phone,
            assignee=draft.assignee,
            opened_by=opened_by,
            opened_at=now,
            updated_at=now,
            follow_up_on=draft.follow_up_on,
        )
        .returning(cases.c.id)
    )
    case_id = int(result.scalar_one())
    terminal_ids = sorted(set(draft.terminal_ids))
    if terminal_ids:
        await conn.execute(
            sa.insert(case_terminals),
            [{"case_id": case_id, "terminal_id": t} for t in terminal_ids],
        )
    return case_id


async def get_case(conn: AsyncConnection, case_id: int) -> CaseRecord | None:
    """One case, or None."""
    found = await _records(conn, sa.select(*_CASE_COLUMNS).where(cases.c.id == case_id))
    return found[0] if found else None


async def update_case(
    conn: AsyncConnection,
    case_id: int,
    values: Mapping[str, Any],
    *,
    expected_state: CaseState | None = None,
) -> bool:
    """Change a case's columns; False if it is gone or no longer in ``expected_state``.

    The state guard makes a state change a compare-and-set: of two people changing the
    same case at once, the second is told, not silently overwritten.
    """
    query = sa.update(cases).where(cases.c.id == case_id).values(**values)
    if expected_state is not None:
        query = query.where(cases.c.state == expected_state.value)
    result = await conn.execute(query)
    return result.rowcount == 1


def _filtered(query: sa.Select[Any], where: CaseFilter) -> sa.Select[Any]:
    c = cases.c
    if where.states is not None:
        query = query.where(c.state.in_([s.value for s in where.states]))
    if where.assignee is not None:
        query = query.where(c.assignee == where.assignee)
    if where.merchant_id is not None:
        query = query.where(c.merchant_id == where.merchant_id)
    if where.terminal_id is not None:
        query = query.where(
            c.id.in_(
                sa.select(case_terminals.c.case_id).where(
                    case_terminals.c.terminal_id == where.terminal_id
                )
            )
        )
    if where.follow_up_from is not None:
        query = query.where(c.follow_up_on >= where.follow_up_from)
    if where.follow_up_to is not None:
        query = query.where(c.follow_up_on <= where.follow_up_to)
    return query


async def list_cases(
    conn: AsyncConnection,
    where: CaseFilter | None = None,
    *,
    limit: int = 100,
    before_id: int | None = None,
) -> list[CaseRecord]:
    """Cases matching ``where``, newest first; ``before_id`` pages on (keyset)."""
    query = _filtered(sa.select(*_CASE_COLUMNS), where or CaseFilter())
    if before_id is not None:
        query = query.where(cases.c.id < before_id)
    query = query.order_by(cases.c.id.desc()).limit(max(1, min(limit, MAX_PAGE + 1)))
    return await _records(conn, query)


async def follow_ups_due(
    conn: AsyncConnection, today: date, *, limit: int = 100
) -> list[CaseRecord]:
    """Cases not closed whose follow-up is today or earlier: the oldest first."""
    query = (
        _filtered(sa.select(*_CASE_COLUMNS), CaseFilter(states=ACTIVE_STATES, follow_up_to=today))
        .order_by(cases.c.follow_up_on, cases.c.id)
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return await _records(conn, query)


async def count_follow_ups_due(conn: AsyncConnection, today: date) -> tuple[int, int]:
    """``(due today, overdue)`` among cases not closed."""
    c = cases.c
    row = (
        await conn.execute(
            sa.select(
                sa.func.count().filter(c.follow_up_on == today),
                sa.func.count().filter(c.follow_up_on < today),
            ).where(c.state.in_([s.value for s in ACTIVE_STATES]), c.follow_up_on <= today)
        )
    ).one()
    return int(row[0]), int(row[1])


async def add_case_note(
    conn: AsyncConnection,
    case_id: int,
    *,
    author: str,
    kind: str,
    text: str,
    now: datetime,
    detail: Mapping[str, Any] | None = None,
) -> CaseNote:
    """Append an entry to a case's timeline."""
    values = {
        "case_id": case_id,
        "ts": now,
        "author": author,
        "kind": kind,
        "text": text,
        "detail": dict(detail or {}),
    }
    result = await conn.execute(sa.insert(case_notes).values(**values).returning(case_notes.c.id))
    return CaseNote(id=int(result.scalar_one()), **values)


async def list_case_notes(conn: AsyncConnection, case_id: int) -> list[CaseNote]:
    """A case's timeline, oldest first."""
    n = case_notes.c
    rows = await conn.execute(
        sa.select(n.id, n.case_id, n.ts, n.author, n.kind, n.text, n.detail)
        .where(n.case_id == case_id)
        .order_by(n.id)
    )
    return [CaseNote.model_validate(dict(r._mapping)) for r in rows]


async def add_case_link(
    conn: AsyncConnection,
    case_id: int,
    kind: CaseLinkKind,
    ref: str,
    *,
    linked_by: str,
    now: datetime,
) -> bool:
    """Link a case to an object; False if it was linked already (nothing changes)."""
    query = (
        insert_for(conn, case_links)
        .values(case_id=case_id, kind=kind.value, ref=ref, linked_by=linked_by, linked_at=now)
        .on_conflict_do_nothing(index_elements=["case_id", "kind", "ref"])
    )
    result = await conn.execute(query)
    return result.rowcount == 1


async def list_case_links(conn: AsyncConnection, case_id: int) -> list[CaseLink]:
    """A case's links, in the order they were made."""
    k = case_links.c
    rows = await conn.execute(
        sa.select(k.id, k.case_id, k.kind, k.ref, k.linked_by, k.linked_at)
        .where(k.case_id == case_id)
        .order_by(k.id)
    )
    return [CaseLink.model_validate(dict(r._mapping)) for r in rows]


async def cases_linked_to(
    conn: AsyncConnection, kind: CaseLinkKind, ref: str | int
) -> list[CaseRecord]:
    """The cases linked to one incident, command or playbook run, newest first."""
    linked = sa.select(case_links.c.case_id).where(
        case_links.c.kind == kind.value, case_links.c.ref == str(ref)
    )
    query = sa.select(*_CASE_COLUMNS).where(cases.c.id.in_(linked)).order_by(cases.c.id.desc())
    return await _records(conn, query)


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search_cases(conn: AsyncConnection, text: str, limit: int = 20) -> list[CaseRecord]:
    """Cases whose number, merchant id, subject, caller or phone contains ``text``.

    ``42`` or ``#42`` also finds case 42 itself; the newest match first. A case desk
    holds thousands of cases, not millions, so a substring scan is fast enough here.
    """
    needle = text.strip()
    if not needle:
        return []
    c = cases.c
    pattern = _like_pattern(needle)
    matches: list[sa.ColumnElement[bool]] = [
        sa.func.lower(column).like(pattern, escape="\\")
        for column in (c.merchant_id, c.subject, c.caller_name, c.caller_phone)
    ]
    number = needle.removeprefix("#")
    if number.isascii() and number.isdigit() and len(number) <= 18:
        matches.append(c.id == int(number))
    query = (
        sa.select(*_CASE_COLUMNS)
        .where(sa.or_(*matches))
        .order_by(c.id.desc())
        .limit(max(1, min(limit, MAX_PAGE)))
    )
    return await _records(conn, query)
