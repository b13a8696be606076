"""Staff accounts, API tokens and the audit log on a real, migrated SQLite database."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.store.accounts import (
    InvalidUsernameError,
    Role,
    UserExistsError,
    WeakPasswordError,
    create_api_token,
    create_user,
    list_audit,
    record_audit,
    resolve_api_token,
    revoke_api_token,
    set_user_disabled,
    verify_login,
)
from posfleet.store.schema import api_tokens, users

GOOD_PASSWORD = "correct horse battery"


def test_roles_are_ordered_by_privilege_not_alphabet() -> None:
    assert sorted([Role.ADMIN, Role.VIEWER, Role.OPS, Role.SUPPORT]) == [
        Role.VIEWER,
        Role.SUPPORT,
        Role.OPS,
        Role.ADMIN,
    ]
    assert Role.ADMIN > Role.VIEWER
    assert Role.OPS.permits(Role.SUPPORT)
    assert Role.OPS.permits(Role.OPS)
    assert not Role.SUPPORT.permits(Role.OPS)


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("", "empty"),
        ("short1!", "at least 12"),
        ("abababababababab", "different characters"),
        ("my-alice-password", "username"),
    ],
)
async def test_weak_passwords_are_refused_with_the_reason(
    sqlite_engine: AsyncEngine, password: str, why: str
) -> None:
    async with sqlite_engine.begin() as conn:
        with pytest.raises(WeakPasswordError, match=why):
            await create_user(conn, "alice", password, Role.SUPPORT)
        assert (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar() == 0


async def test_invalid_username_is_refused(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        with pytest.raises(InvalidUsernameError, match="letters, digits"):
            await create_user(conn, "alice smith", GOOD_PASSWORD, Role.VIEWER)


async def test_password_is_stored_as_argon2id_and_verifies(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        created = await create_user(conn, "alice", GOOD_PASSWORD, Role.SUPPORT)
        stored = (await conn.execute(sa.select(users.c.password_hash))).scalar_one()
    assert stored.startswith("$argon2id$")
    assert GOOD_PASSWORD not in stored
    async with sqlite_engine.begin() as conn:
        user = await verify_login(conn, "alice", GOOD_PASSWORD)
        assert user is not None
        assert (user.id, user.username, user.role) == (created.id, "alice", Role.SUPPORT)
        assert await verify_login(conn, "alice", GOOD_PASSWORD + "x") is None
        assert await verify_login(conn, "bob", GOOD_PASSWORD) is None


async def test_duplicate_user_is_refused_and_the_transaction_goes_on(
    sqlite_engine: AsyncEngine,
) -> None:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "alice", GOOD_PASSWORD, Role.VIEWER)
        with pytest.raises(UserExistsError, match="already exists"):
            await create_user(conn, "alice", GOOD_PASSWORD, Role.ADMIN)
        await create_user(conn, "bob", GOOD_PASSWORD, Role.OPS)
    async with sqlite_engine.connect() as conn:
        names = (await conn.execute(sa.select(users.c.username, users.c.role))).all()
    assert sorted(names) == [("alice", "viewer"), ("bob", "ops")]


async def test_disabled_user_cannot_log_in(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "alice", GOOD_PASSWORD, Role.VIEWER)
        assert await set_user_disabled(conn, "alice", True)
        assert await verify_login(conn, "alice", GOOD_PASSWORD) is None


async def test_login_upgrades_a_hash_made_with_older_parameters(sqlite_engine: AsyncEngine) -> None:
    old_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD_PASSWORD)
    async with sqlite_engine.begin() as conn:
        await conn.execute(
            sa.insert(users).values(
                username="alice", password_hash=old_hash, role="viewer", created_at=utcnow()
            )
        )
        assert await verify_login(conn, "alice", GOOD_PASSWORD) is not None
        new_hash = (await conn.execute(sa.select(users.c.password_hash))).scalar_one()
    assert new_hash != old_hash
    assert not PasswordHasher().check_needs_rehash(new_hash)
    async with sqlite_engine.begin() as conn:
        assert await verify_login(conn, "alice", GOOD_PASSWORD) is not None


async def test_api_token_is_stored_only_as_its_sha256(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "ci", Role.OPS)
        row = (await conn.execute(sa.select(api_tokens))).one()
    assert token.startswith("pf_")
    assert token not in [str(value) for value in row]
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.last_used_at is None


async def test_token_resolves_to_its_principal_until_revoked(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "ci", Role.OPS)
    async with sqlite_engine.begin() as conn:
        who = await resolve_api_token(conn, token)
        used_at = (await conn.execute(sa.select(api_tokens.c.last_used_at))).scalar_one()
    assert who is not None
    assert (who.kind, who.name, who.role, who.actor) == ("token", "ci", Role.OPS, "token:ci")
    assert used_at is not None
    async with sqlite_engine.begin() as conn:
        assert await revoke_api_token(conn, who.id)
        assert not await revoke_api_token(conn, who.id)
        assert await resolve_api_token(conn, token) is None


@pytest.mark.parametrize("presented", ["", "pf_", "Bearer x", "pf_" + "A" * 43, "é" * 50])
async def test_unknown_or_malformed_tokens_resolve_to_nobody(
    sqlite_engine: AsyncEngine, presented: str
) -> None:
    async with sqlite_engine.begin() as conn:
        await create_api_token(conn, "ci", Role.ADMIN)
        assert await resolve_api_token(conn, presented) is None


async def test_audit_log_lists_newest_first_with_who_what_and_why(
    sqlite_engine: AsyncEngine,
) -> None:
    async with sqlite_engine.begin() as conn:
        await record_audit(conn, "user:alice", "login", "alice", {"remote": "10.0.0.7"}, "")
        await record_audit(
            conn, "user:alice", "command.run", "T-0001", {"name": "print"}, "ticket 42"
        )
    async with sqlite_engine.connect() as conn:
        entries = await list_audit(conn, limit=10)
    assert [(e.action, e.target, e.reason) for e in entries] == [
        ("command.run", "T-0001", "ticket 42"),
        ("login", "alice", ""),
    ]
    assert entries[0].detail == {"name": "print"}
    assert entries[0].ts.tzinfo is not None
