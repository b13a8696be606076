"""Failed logins per account and per client address: the login throttle's memory.

Rows of ``login_attempts`` (migration 0016), so the throttle holds across restarts and
between instances on one database. How long a subject waits after how many failures is
the caller's policy (:mod:`posfleet.dashboard.login_throttle`); this module only counts,
remembers and forgets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import login_attempts
from posfleet.store.upsert import insert_for

MAX_SUBJECT_CHARS = 128


class AttemptKind(StrEnum):
    """What a row counts the failures of."""

    ACCOUNT = "account"
    ADDRESS = "address"


Subject = tuple[AttemptKind, str]
"""``(kind, subject)``: an account's folded username, or a client address."""


async def blocked_until(
    conn: AsyncConnection, subjects: Iterable[Subject], now: datetime
) -> dict[AttemptKind, datetime]:
    """For each kind among ``subjects`` still held back at ``now``: until when."""
    la = login_attempts.c
    wanted = [sa.and_(la.kind == k.value, la.subject == s) for k, s in subjects]
    if not wanted:
        return {}
    query = sa.select(la.kind, la.blocked_until).where(sa.or_(*wanted), la.blocked_until > now)
    return {AttemptKind(row.kind): row.blocked_until for row in await conn.execute(query)}


async def record_failure(
    conn: AsyncConnection,
    subject: Subject,
    now: datetime,
    *,
    window: timedelta,
    delay_after: Callable[[int], timedelta | None],
) -> tuple[int, datetime | None]:
    """Count one failed login for ``subject``: its failures in a row and how long it waits.

    Failures older than ``window`` are forgotten first; ``delay_after(failures)`` says how
    long the subject waits before its next attempt is checked (None: not at all).
    """
    kind, name = subject
    la = login_attempts.c
    row = (
        await conn.execute(
            sa.select(la.failures, la.last_failure_at).where(
                la.kind == kind.value, la.subject == name
            )
        )
    ).first()
    failures = 1
    if row is not None and now - row.last_failure_at < window:
        failures = row.failures + 1
    delay = delay_after(failures)
    until = now + delay if delay is not None else None
    values = {"failures": failures, "last_failure_at": now, "blocked_until": until}
    insert = insert_for(conn, login_attempts).values(kind=kind.value, subject=name, **values)
    await conn.execute(
        insert.on_conflict_do_update(index_elements=["kind", "subject"], set_=values)
    )
    return failures, until


async def clear_failures(conn: AsyncConnection, subject: Subject) -> None:
    """Forget ``subject``'s failures (its owner just logged in)."""
    la = login_attempts.c
    kind, name = subject
    await conn.execute(sa.delete(login_attempts).where(la.kind == kind.value, la.subject == name))


async def forget_stale(conn: AsyncConnection, now: datetime, window: timedelta) -> int:
    """Drop the rows with nothing left to remember: last failure past ``window``, no wait."""
    la = login_attempts.c
    result = await conn.execute(
        sa.delete(login_attempts).where(
            la.last_failure_at < now - window,
            sa.or_(la.blocked_until.is_(None), la.blocked_until <= now),
        )
    )
    return int(result.rowcount or 0)
