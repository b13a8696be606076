"""What the admin pages read and change about staff users and API tokens.

Beside :mod:`posfleet.store.accounts` (creating users, logging in, resolving tokens):
listing, role changes, password resets and the token list. Like the rest of the store,
every function takes an open connection and leaves the transaction to the caller, so
a change and its audit line commit together.
"""

from __future__ import annotations

from datetime import datetime

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.store.accounts import Role, User, hash_password, token_digest
from posfleet.store.schema import api_tokens, users
from posfleet.store.sessions import SessionEnd, end_user_sessions

_USER_COLUMNS = (users.c.id, users.c.username, users.c.role, users.c.created_at, users.c.disabled)


class ApiToken(pydantic.BaseModel):
    """An API token as the admin pages and the API list it: never the token itself."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: int
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None
    revoked: bool


def _user(m: sa.RowMapping) -> User:
    return User(m["id"], m["username"], Role(m["role"]), m["created_at"], m["disabled"])


async def list_users(conn: AsyncConnection) -> list[User]:
    """Every staff user, by username."""
    rows = await conn.execute(sa.select(*_USER_COLUMNS).order_by(users.c.username))
    return [_user(r._mapping) for r in rows]


async def find_user(conn: AsyncConnection, user_id: int) -> User | None:
    """The user with this id (enabled or not), or None."""
    row = (await conn.execute(sa.select(*_USER_COLUMNS).where(users.c.id == user_id))).first()
    return None if row is None else _user(row._mapping)


async def count_enabled_admins(conn: AsyncConnection, *, besides: int | None = None) -> int:
    """How many enabled admins there are, not counting the user ``besides``."""
    query = (
        sa.select(sa.func.count())
        .select_from(users)
        .where(users.c.role == Role.ADMIN.value)
        .where(users.c.disabled.is_(False))
    )
    if besides is not None:
        query = query.where(users.c.id != besides)
    return int((await conn.execute(query)).scalar_one())


async def set_user_role(conn: AsyncConnection, user_id: int, role: Role) -> bool:
    """Give the user ``role`` (effective on their next request); False if no such user."""
    result = await conn.execute(
        sa.update(users).where(users.c.id == user_id).values(role=Role(role).value)
    )
    return result.rowcount == 1


async def reset_password(conn: AsyncConnection, user: User, password: str) -> int:
    """Set a new password and end the user's sessions; how many sessions were live.

    Raises :class:`~posfleet.store.accounts.WeakPasswordError` before writing anything.
    """
    password_hash = await hash_password(user.username, password)
    await conn.execute(
        sa.update(users).where(users.c.id == user.id).values(password_hash=password_hash)
    )
    return await end_user_sessions(conn, user.id, utcnow(), SessionEnd.PASSWORD_RESET)


def _token(m: sa.RowMapping) -> ApiToken:
    return ApiToken.model_validate(dict(m))


_TOKEN_COLUMNS = (
    api_tokens.c.id,
    api_tokens.c.name,
    api_tokens.c.role,
    api_tokens.c.created_at,
    api_tokens.c.last_used_at,
    api_tokens.c.revoked,
)


async def list_api_tokens(conn: AsyncConnection) -> list[ApiToken]:
    """Every API token, live ones first, newest first."""
    rows = await conn.execute(
        sa.select(*_TOKEN_COLUMNS).order_by(api_tokens.c.revoked, api_tokens.c.id.desc())
    )
    return [_token(r._mapping) for r in rows]


async def find_api_token(conn: AsyncConnection, token_id: int) -> ApiToken | None:
    """The token with this id (live or revoked), or None."""
    row = (
        await conn.execute(sa.select(*_TOKEN_COLUMNS).where(api_tokens.c.id == token_id))
    ).first()
    return None if row is None else _token(row._mapping)


async def token_record(conn: AsyncConnection, token: str) -> ApiToken:
    """The record of a token just created (looked up by its digest)."""
    row = (
        await conn.execute(
            sa.select(*_TOKEN_COLUMNS).where(api_tokens.c.token_hash == token_digest(token))
        )
    ).one()
    return _token(row._mapping)
