"""Staff browser sessions, stored in the database so that every instance agrees on them.

The session cookie is signed (see :mod:`posfleet.dashboard.session_tokens`), but the
signature only proves the server issued it; whether the session is still live is
decided here: a row that is not ended, not expired, and whose user is enabled. So a
logout, a disable or a password reset ends the session on every dashboard instance at
once, and a restart does not bring an ended one back.

Rows are keyed by the SHA-256 of the cookie's random session id: someone who copies the
database cannot open a session from it. Functions take an open connection and leave the
transaction to the caller, so a session change and its audit line commit together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.schema import staff_sessions, users

LAST_SEEN_RESOLUTION = timedelta(minutes=1)
"""``last_seen_at`` is rewritten at most this often per session: a page view is a read,
not a write that queues behind the ingest for SQLite's write lock."""

KEPT_AFTER_EXPIRY = timedelta(days=30)
"""How long an expired or ended session's row stays for the admin pages, then goes."""

USER_AGENT_CHARS = 256
ADDRESS_CHARS = 64


class SessionEnd(StrEnum):
    """Why a session ended before its expiry, stored by name."""

    LOGOUT = "logout"
    DISABLED = "disabled"
    PASSWORD_RESET = "password_reset"
    ENDED_BY_ADMIN = "ended_by_admin"


@dataclass(frozen=True, slots=True)
class LiveSession:
    """A live session and its (enabled) user, as one request's lookup finds it."""

    user_id: int
    username: str
    role: str
    """The user's role by name (:class:`~posfleet.store.accounts.Role`)."""
    last_seen_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class StaffSession:
    """One session as the admin pages list it (never its id: that opens it)."""

    key: str
    """A short, non-secret handle: the first characters of the stored digest."""
    user_id: int
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_reason: str | None
    user_agent: str
    address: str

    def live(self, now: datetime) -> bool:
        """True while the session lets its user in (the user's own state aside)."""
        return self.ended_at is None and self.expires_at > now


def session_digest(session_id: str) -> str:
    """What the database stores for a session id: SHA-256 in hex.

    Session ids carry 128 random bits, so a fast unsalted hash suffices: there is nothing
    to guess, and the lookup stays one primary-key equality.
    """
    return hashlib.sha256(session_id.encode()).hexdigest()


async def start_session(  # noqa: PLR0917 - the columns of one row, named
    conn: AsyncConnection,
    session_id: str,
    user_id: int,
    now: datetime,
    expires_at: datetime,
    user_agent: str = "",
    address: str = "",
) -> None:
    """Record a new session; also drops rows long past their end, so the table stays small."""
    await conn.execute(
        sa.delete(staff_sessions).where(staff_sessions.c.expires_at < now - KEPT_AFTER_EXPIRY)
    )
    await conn.execute(
        sa.insert(staff_sessions).values(
            id=session_digest(session_id),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=expires_at,
            user_agent=user_agent[:USER_AGENT_CHARS],
            address=address[:ADDRESS_CHARS],
        )
    )


async def live_session(conn: AsyncConnection, session_id: str, now: datetime) -> LiveSession | None:
    """The session and its user if it is live and the user enabled, else None (one query)."""
    s, u = staff_sessions.c, users.c
    row = (
        await conn.execute(
            sa.select(u.id, u.username, u.role, s.last_seen_at, s.expires_at)
            .select_from(staff_sessions.join(users, users.c.id == s.user_id))
            .where(s.id == session_digest(session_id))
            .where(s.ended_at.is_(None))
            .where(s.expires_at > now)
            .where(u.disabled.is_(False))
        )
    ).first()
    if row is None:
        return None
    return LiveSession(row.id, row.username, row.role, row.last_seen_at, row.expires_at)


async def touch_session(conn: AsyncConnection, session_id: str, now: datetime) -> None:
    """Note that the session was used now (skipped if noted within the resolution)."""
    s = staff_sessions.c
    await conn.execute(
        sa.update(staff_sessions)
        .where(s.id == session_digest(session_id))
        .where(s.last_seen_at <= now - LAST_SEEN_RESOLUTION)
        .values(last_seen_at=now)
    )


async def end_session(
    conn: AsyncConnection, session_id: str, now: datetime, reason: SessionEnd
) -> bool:
    """End one session for good; False if it had already ended."""
    s = staff_sessions.c
    result = await conn.execute(
        sa.update(staff_sessions)
        .where(s.id == session_digest(session_id))
        .where(s.ended_at.is_(None))
        .values(ended_at=now, ended_reason=reason.value)
    )
    return result.rowcount == 1


async def end_user_sessions(
    conn: AsyncConnection, user_id: int, now: datetime, reason: SessionEnd
) -> int:
    """End every live session of a user (on every instance); how many were live."""
    s = staff_sessions.c
    result = await conn.execute(
        sa.update(staff_sessions)
        .where(s.user_id == user_id)
        .where(s.ended_at.is_(None))
        .where(s.expires_at > now)
        .values(ended_at=now, ended_reason=reason.value)
    )
    return int(result.rowcount)


def _staff_session(row: sa.Row[tuple[object, ...]]) -> StaffSession:
    m = row._mapping
    return StaffSession(
        key=str(m["id"])[:12],
        user_id=m["user_id"],
        created_at=m["created_at"],
        last_seen_at=m["last_seen_at"],
        expires_at=m["expires_at"],
        ended_at=m["ended_at"],
        ended_reason=m["ended_reason"],
        user_agent=m["user_agent"],
        address=m["address"],
    )


async def list_user_sessions(
    conn: AsyncConnection, user_id: int, *, limit: int = 20
) -> list[StaffSession]:
    """A user's newest sessions, live or not, newest first."""
    s = staff_sessions.c
    rows = await conn.execute(
        sa.select(staff_sessions)
        .where(s.user_id == user_id)
        .order_by(s.created_at.desc(), s.id)
        .limit(max(1, limit))
    )
    return [_staff_session(r) for r in rows]


async def live_session_counts(conn: AsyncConnection, now: datetime) -> dict[int, int]:
    """How many live sessions each user has (users without any are absent)."""
    s = staff_sessions.c
    rows = await conn.execute(
        sa.select(s.user_id, sa.func.count())
        .where(s.ended_at.is_(None))
        .where(s.expires_at > now)
        .group_by(s.user_id)
    )
    return {int(user_id): int(count) for user_id, count in rows}
