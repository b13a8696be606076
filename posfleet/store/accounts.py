"""Staff accounts, API tokens and the audit log.

Passwords are stored as argon2id hashes, API tokens as their SHA-256 only: a copy of the
database gives an attacker neither. Like the rest of the store, every function takes an
open :class:`AsyncConnection` and leaves the transaction to the caller, so a change and
its audit record commit together.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import pydantic
import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.store.errors import StoreError
from posfleet.store.schema import ROLES, api_tokens, audit_log, users
from posfleet.store.sessions import SessionEnd, end_user_sessions

MIN_PASSWORD_LENGTH = 12
"""Shortest password accepted (NIST SP 800-63B asks for at least 8; staff can do 12)."""

MAX_PASSWORD_LENGTH = 1024
"""Longest password accepted, so a login form cannot be used to make the server hash megabytes."""

MIN_DISTINCT_CHARACTERS = 5
"""Rejects ``aaaaaaaaaaaa`` and ``121212121212`` whatever their length."""

TOKEN_PREFIX = "pf_"
"""Marks a posfleet API token, so secret scanners and people recognise a leaked one."""

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""``last_used_at`` is only rewritten when older than this: one write per token per minute,
not one per API request, which would serialise every reader behind SQLite's write lock."""

USERNAME_PATTERN = r"^[A-Za-z0-9._@-]{1,64}$"
_USERNAME_RE = re.compile(USERNAME_PATTERN)
_TOKEN_RE = re.compile(rf"^{TOKEN_PREFIX}[A-Za-z0-9_-]{{32,128}}$")

# Default argon2id parameters of argon2-cffi (RFC 9106's low-memory profile). Stored
# hashes carry their own parameters, so changing these upgrades users at their next login.
_hasher = PasswordHasher()


class AccountError(StoreError):
    """Base class of the errors about accounts and tokens."""


class InvalidUsernameError(AccountError, ValueError):
    """A username that does not match :data:`USERNAME_PATTERN`."""

    def __init__(self, username: str) -> None:
        super().__init__(
            f"invalid username {username!r}: use 1 to 64 letters, digits, '.', '_', '@' or '-'"
        )
        self.username = username


class WeakPasswordError(AccountError, ValueError):
    """A password too weak to protect a staff account; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"password rejected: {reason}")
        self.reason = reason


class UserExistsError(AccountError, ValueError):
    """A user with this username already exists."""

    def __init__(self, username: str) -> None:
        super().__init__(f"user {username!r} already exists")
        self.username = username


class Role(StrEnum):
    """Staff roles, each permitting everything the ones before it permit.

    Comparisons follow privilege (``Role.VIEWER < Role.ADMIN``), not the alphabet, so
    ``role >= Role.OPS`` means what it says.
    """

    VIEWER = "viewer"
    SUPPORT = "support"
    LEAD = "lead"
    """Support lead: what support does, plus writing the knowledge base."""
    OPS = "ops"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position from least (0) to most privileged."""
        return ROLES.index(self.value)

    def permits(self, required: Role) -> bool:
        """True if someone with this role may do what needs ``required``."""
        return self.rank >= required.rank

    def __lt__(self, other: object) -> bool:
        if isinstance(other, Role):
            return self.rank < other.rank
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, Role):
            return self.rank <= other.rank
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, Role):
            return self.rank > other.rank
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, Role):
            return self.rank >= other.rank
        return NotImplemented


@dataclass(frozen=True, slots=True)
class User:
    """A staff account (without its password hash)."""

    id: int
    username: str
    role: Role
    created_at: datetime
    disabled: bool


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is making a request: a logged-in user or an API token."""

    kind: Literal["user", "token"]
    id: int
    name: str
    role: Role

    @property
    def actor(self) -> str:
        """How this principal appears in the audit log, e.g. ``user:alice``."""
        return f"{self.kind}:{self.name}"

    @classmethod
    def for_user(cls, user: User) -> Principal:
        """The principal of a logged-in user."""
        return cls("user", user.id, user.username, user.role)


class AuditEntry(pydantic.BaseModel):
    """One line of the audit log: who did what to what, when and why (also the API's)."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    ts: datetime
    actor: str
    action: str
    target: str
    detail: dict[str, Any]
    reason: str

    @classmethod
    def from_row(cls, row: sa.RowMapping) -> AuditEntry:
        """The entry of an ``audit_log`` row."""
        return cls(**{**row, "detail": dict(row["detail"] or {})})


AUDIT_COLUMNS = (
    audit_log.c.id,
    audit_log.c.ts,
    audit_log.c.actor,
    audit_log.c.action,
    audit_log.c.target,
    audit_log.c.detail,
    audit_log.c.reason,
)


def check_password_strength(username: str, password: str) -> None:
    """Raise :class:`WeakPasswordError` if ``password`` is too weak for ``username``."""
    if not password:
        raise WeakPasswordError("it is empty")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise WeakPasswordError(
            f"it has {len(password)} characters, at least {MIN_PASSWORD_LENGTH} are needed"
        )
    if len(password) > MAX_PASSWORD_LENGTH:
        raise WeakPasswordError(f"it is longer than {MAX_PASSWORD_LENGTH} characters")
    if len(set(password)) < MIN_DISTINCT_CHARACTERS:
        raise WeakPasswordError(
            f"it uses fewer than {MIN_DISTINCT_CHARACTERS} different characters"
        )
    if username and username.casefold() in password.casefold():
        raise WeakPasswordError("it contains the username")


def _user(row: sa.RowMapping) -> User:
    return User(
        id=row["id"],
        username=row["username"],
        role=Role(row["role"]),
        created_at=row["created_at"],
        disabled=row["disabled"],
    )


_USER_COLUMNS = (users.c.id, users.c.username, users.c.role, users.c.created_at, users.c.disabled)


async def hash_password(username: str, password: str) -> str:
    """The argon2id hash to store for ``password``; :class:`WeakPasswordError` if too weak."""
    check_password_strength(username, password)
    # Hashing takes tens of milliseconds of CPU by design; keep it off the event loop.
    return await asyncio.to_thread(_hasher.hash, password)


async def create_user(conn: AsyncConnection, username: str, password: str, role: Role) -> User:
    """Create a staff user with an argon2id hash of ``password``.

    Raises :class:`InvalidUsernameError`, :class:`WeakPasswordError` or
    :class:`UserExistsError`; nothing is written then.
    """
    if not _USERNAME_RE.match(username):
        raise InvalidUsernameError(username)
    password_hash = await hash_password(username, password)
    created_at = utcnow()
    try:
        # A savepoint, so a duplicate leaves the caller's transaction usable (PostgreSQL
        # aborts the whole transaction on an error otherwise).
        async with conn.begin_nested():
            result = await conn.execute(
                sa.insert(users)
                .values(
                    username=username,
                    password_hash=password_hash,
                    role=Role(role).value,
                    created_at=created_at,
                    disabled=False,
                )
                .returning(users.c.id)
            )
    except IntegrityError as exc:
        raise UserExistsError(username) from exc
    return User(result.scalar_one(), username, Role(role), created_at, disabled=False)


async def get_user(conn: AsyncConnection, user_id: int) -> User | None:
    """The user with this id, or None."""
    row = (await conn.execute(sa.select(*_USER_COLUMNS).where(users.c.id == user_id))).first()
    return None if row is None else _user(row._mapping)


async def set_user_disabled(conn: AsyncConnection, username: str, disabled: bool) -> bool:
    """Disable (or re-enable) a user; return False if there is no such user.

    Disabling also ends the user's sessions, on every dashboard instance; re-enabling
    does not revive them (the user logs in again).
    """
    result = await conn.execute(
        sa.update(users)
        .where(users.c.username == username)
        .values(disabled=disabled)
        .returning(users.c.id)
    )
    user_id = result.scalar_one_or_none()
    if user_id is not None and disabled:
        await end_user_sessions(conn, user_id, utcnow(), SessionEnd.DISABLED)
    return user_id is not None


@functools.cache
def _decoy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def _verify(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def verify_login(conn: AsyncConnection, username: str, password: str) -> User | None:
    """The user if ``password`` is right and the account is enabled, else None.

    An unknown username costs the same argon2 verification as a known one, so response
    times do not reveal which usernames exist. A hash made with older argon2 parameters
    is replaced on a successful login, the only moment the password is known.
    """
    if len(password) > MAX_PASSWORD_LENGTH:
        return None
    row = (
        await conn.execute(
            sa.select(*_USER_COLUMNS, users.c.password_hash).where(users.c.username == username)
        )
    ).first()
    if row is None:
        await asyncio.to_thread(_verify, await asyncio.to_thread(_decoy_hash), password)
        return None
    if not await asyncio.to_thread(_verify, row.password_hash, password):
        return None
    if row.disabled:
        return None
    if _hasher.check_needs_rehash(row.password_hash):
        new_hash = await asyncio.to_thread(_hasher.hash, password)
        await conn.execute(
            sa.update(users).where(users.c.id == row.id).values(password_hash=new_hash)
        )
    return _user(row._mapping)


def token_digest(token: str) -> str:
    """What the database stores for an API token: its SHA-256 in hex."""
    # Tokens carry 256 random bits, so a fast unsalted hash is enough: there is nothing to
    # brute-force, and lookups stay one indexed equality.
    return hashlib.sha256(token.encode()).hexdigest()


async def create_api_token(conn: AsyncConnection, name: str, role: Role) -> str:
    """Create an API token and return it; it is shown this once and stored only hashed."""
    if not name or len(name) > 64:
        raise AccountError(f"invalid token name {name!r}: use 1 to 64 characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    await conn.execute(
        sa.insert(api_tokens).values(
            name=name,
            token_hash=token_digest(token),
            role=Role(role).value,
            created_at=utcnow(),
            revoked=False,
        )
    )
    return token


async def resolve_api_token(conn: AsyncConnection, token: str) -> Principal | None:
    """The principal behind a presented token, or None if it is unknown or revoked."""
    if not _TOKEN_RE.match(token):
        return None
    t = api_tokens.c
    digest = token_digest(token)
    now = utcnow()
    # Write first, read second: on SQLite a transaction that reads and then writes fails
    # at once ("database is locked") if another writer committed in between, and ingest
    # commits all the time. Starting with the (rarely effective) UPDATE takes the write
    # lock up front, waiting politely for it, so the request never fails for that reason.
    await conn.execute(
        sa.update(api_tokens)
        .where(t.token_hash == digest)
        .where(t.revoked.is_(False))
        .where(sa.or_(t.last_used_at.is_(None), t.last_used_at <= now - LAST_USED_RESOLUTION))
        .values(last_used_at=now)
    )
    row = (
        await conn.execute(
            sa.select(t.id, t.name, t.role)
            .where(t.token_hash == digest)
            .where(t.revoked.is_(False))
        )
    ).first()
    if row is None:
        return None
    return Principal("token", row.id, row.name, Role(row.role))


async def revoke_api_token(conn: AsyncConnection, token_id: int) -> bool:
    """Revoke a token for good; return False if there is no such live token."""
    result = await conn.execute(
        sa.update(api_tokens)
        .where(api_tokens.c.id == token_id)
        .where(api_tokens.c.revoked.is_(False))
        .values(revoked=True)
    )
    return result.rowcount == 1


# The parameters read as the audit sentence itself, and callers pass them in that order.
async def record_audit(  # noqa: PLR0917
    conn: AsyncConnection,
    actor: str,
    action: str,
    target: str = "",
    detail: Mapping[str, Any] | None = None,
    reason: str = "",
) -> None:
    """Append to the audit log: ``actor`` did ``action`` to ``target`` because ``reason``."""
    await conn.execute(
        sa.insert(audit_log).values(
            ts=utcnow(),
            actor=actor,
            action=action,
            target=target,
            detail=dict(detail or {}),
            reason=reason,
        )
    )


async def list_audit(conn: AsyncConnection, limit: int = 100) -> list[AuditEntry]:
    """The newest ``limit`` audit entries, newest first."""
    rows = await conn.execute(
        sa.select(*AUDIT_COLUMNS).order_by(audit_log.c.id.desc()).limit(max(1, limit))
    )
    return [AuditEntry.from_row(r._mapping) for r in rows]
