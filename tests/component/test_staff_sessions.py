"""Browser sessions live in the database: two dashboard instances over one SQLite file agree
on them, a logout or a disable on one ends the session on the other at once, and a
restart neither revives an ended session nor loses a live one."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.accounts import Role, create_user, set_user_disabled
from posfleet.store.engine import schema_change_transaction
from posfleet.store.migrate import alembic_config
from posfleet.store.schema import staff_sessions

SECRET = b"s" * 32
PASSWORD = "receipt-roll-empty-4"

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "posfleet.db"


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as exits:
        yield exits


async def _instance(stack: AsyncExitStack, db_path: Path) -> Client:
    """A dashboard instance with its own engine (its own pool) on the shared file."""
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    stack.push_async_callback(engine.dispose)
    await upgrade_engine(engine)
    app = create_app(engine, session_secret=SECRET)
    # No cookie jar: each request names the cookie it sends, as a browser of its own would.
    client: Client = TestClient(TestServer(app), cookie_jar=DummyCookieJar())
    await stack.enter_async_context(client)
    return client


def _engine(client: Client) -> AsyncEngine:
    assert client.app is not None
    return client.app[ENGINE_KEY]


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def _log_in(client: Client) -> str:
    """Log in as alice through the form; the session cookie's value."""
    form = await client.get("/login")
    presession = form.cookies["pf_login"].value
    response = await client.post(
        "/login",
        data={"csrf_token": _csrf(await form.text()), "username": "alice", "password": PASSWORD},
        headers={"Cookie": f"pf_login={presession}"},
        allow_redirects=False,
    )
    assert response.status == 303
    return response.cookies["pf_session"].value


async def _fleet_status(client: Client, cookie: str) -> int:
    response = await client.get(
        "/", headers={"Cookie": f"pf_session={cookie}"}, allow_redirects=False
    )
    return response.status


async def _log_out(client: Client, cookie: str) -> None:
    headers = {"Cookie": f"pf_session={cookie}"}
    page = await client.get("/", headers=headers)
    response = await client.post(
        "/logout",
        data={"csrf_token": _csrf(await page.text())},
        headers=headers,
        allow_redirects=False,
    )
    assert response.status == 303


@pytest.fixture
async def alice(db_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{db_path}")
    try:
        await upgrade_engine(engine)
        async with engine.begin() as conn:
            await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    finally:
        await engine.dispose()


@pytest.mark.usefixtures("alice")
async def test_a_logout_on_one_instance_ends_the_session_on_the_other(
    stack: AsyncExitStack, db_path: Path
) -> None:
    first, second = await _instance(stack, db_path), await _instance(stack, db_path)
    cookie = await _log_in(first)
    assert await _fleet_status(second, cookie) == 200

    await _log_out(first, cookie)

    assert await _fleet_status(second, cookie) == 303
    assert await _fleet_status(first, cookie) == 303


@pytest.mark.usefixtures("alice")
async def test_disabling_the_user_ends_the_session_on_every_instance(
    stack: AsyncExitStack, db_path: Path
) -> None:
    first, second = await _instance(stack, db_path), await _instance(stack, db_path)
    cookie = await _log_in(first)
    assert await _fleet_status(second, cookie) == 200

    async with (_engine(first)).begin() as conn:
        await set_user_disabled(conn, "alice", True)

    assert await _fleet_status(second, cookie) == 303
    async with (_engine(first)).begin() as conn:
        await set_user_disabled(conn, "alice", False)
    # Re-enabling lets alice log in again; it does not revive what the disable ended.
    assert await _fleet_status(second, cookie) == 303
    assert await _fleet_status(second, await _log_in(second)) == 200


@pytest.mark.usefixtures("alice")
async def test_after_a_restart_a_live_session_stays_and_an_ended_one_stays_ended(
    db_path: Path,
) -> None:
    async with AsyncExitStack() as before_restart:
        instance = await _instance(before_restart, db_path)
        kept, ended = await _log_in(instance), await _log_in(instance)
        await _log_out(instance, ended)

    async with AsyncExitStack() as after_restart:
        restarted = await _instance(after_restart, db_path)
        assert await _fleet_status(restarted, kept) == 200
        assert await _fleet_status(restarted, ended) == 303


@pytest.mark.usefixtures("alice")
async def test_the_database_holds_no_usable_session_id(
    stack: AsyncExitStack, db_path: Path
) -> None:
    instance = await _instance(stack, db_path)
    cookie = await _log_in(instance)
    session_id = cookie.split(".")[1]
    async with (_engine(instance)).connect() as conn:
        rows = (await conn.execute(sa.select(staff_sessions))).mappings().all()
    assert len(rows) == 1
    assert session_id not in str(dict(rows[0]))
    assert rows[0]["ended_at"] is None


def _down_and_up(connection: Connection) -> list[bool]:
    config = alembic_config()
    config.attributes["connection"] = connection
    present = []
    with schema_change_transaction(connection):
        command.downgrade(config, "0013_cases")
        present.append(sa.inspect(connection).has_table("staff_sessions"))
        command.upgrade(config, "head")
        present.append(sa.inspect(connection).has_table("staff_sessions"))
    return present


async def test_migration_0014_downgrades_and_upgrades_again(sqlite_engine: AsyncEngine) -> None:
    async with sqlite_engine.connect() as conn:
        assert await conn.run_sync(_down_and_up) == [False, True]
