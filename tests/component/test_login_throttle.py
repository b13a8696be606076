"""Login protection through the real app: per client address and per account, in the
database, with growing delays instead of a lockout of the real user.

Clients are told apart by ``X-Forwarded-For`` from a trusted proxy (the test server's
loopback peer is configured as one). The clock is the throttle's own, moved by the test:
no test sleeps for a delay, each reads the delay the server reports (``Retry-After``).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import LOGIN_THROTTLE_KEY
from posfleet.dashboard.login_throttle import LoginThrottle, parse_networks
from posfleet.dashboard.metrics_endpoint import render_metrics
from posfleet.store import accounts, create_engine
from posfleet.store.accounts import Role, create_user

SECRET = bytes(range(32))
PASSWORD = "correct horse battery staple"
ATTACKER = "203.0.113.9"
ALICE_DESK = "198.51.100.20"
Client = TestClient[web.Request, web.Application]


class Clock:
    """The throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real argon2id at its cheapest: each test makes dozens of attempts, and what it
    checks is the throttle, not the hash (tests/unit/test_accounts.py checks that)."""
    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(1, 8, 1))


def _app(engine: AsyncEngine, clock: Clock) -> web.Application:
    app = create_app(engine, session_secret=SECRET)
    app[LOGIN_THROTTLE_KEY] = LoginThrottle(
        trusted_proxies=parse_networks(["127.0.0.1", "::1"]), clock=clock
    )
    return app


async def _log_in(
    client: Client, username: str, password: str, address: str | None
) -> ClientResponse:
    form = await (await client.get("/login")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert match is not None
    headers = {"X-Forwarded-For": f"{address}, 127.0.0.1"} if address else {}
    data = {"csrf_token": match.group(1), "username": username, "password": password}
    return await client.post("/login", data=data, headers=headers, allow_redirects=False)


@pytest.fixture
async def users(sqlite_engine: AsyncEngine) -> AsyncEngine:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    return sqlite_engine


@pytest.fixture
async def served(
    users: AsyncEngine,
) -> AsyncIterator[tuple[Client, Clock, Callable[[], web.Application]]]:
    clock = Clock()
    app = _app(users, clock)
    async with TestClient(TestServer(app)) as client:
        yield client, clock, lambda: app


async def test_many_usernames_from_one_address_are_slowed_ever_longer(
    served: tuple[Client, Clock, Callable[[], web.Application]],
) -> None:
    client, clock, app = served
    statuses = [(await _log_in(client, f"user{n}", "guess", ATTACKER)).status for n in range(10)]
    assert statuses == [200] * 10  # ten typos' worth go through...
    held = await _log_in(client, "user10", "guess", ATTACKER)
    assert held.status == 429  # ...then that address waits, whatever username it tries
    assert held.headers["Retry-After"] == "1"
    assert "from this address" in await held.text()
    waits = []
    for n in range(11, 15):
        clock.now += timedelta(seconds=int(held.headers["Retry-After"]))
        assert (await _log_in(client, f"user{n}", "guess", ATTACKER)).status == 200
        held = await _log_in(client, f"user{n}x", "guess", ATTACKER)
        assert held.status == 429
        waits.append(int(held.headers["Retry-After"]))
    assert waits == [2, 4, 8, 16]  # the delay doubles with each further failure

    # Alice, at her own desk, is not slowed by any of it.
    ok = await _log_in(client, "alice", PASSWORD, ALICE_DESK)
    assert (ok.status, ok.headers["Location"]) == (303, ok.headers["Location"])
    assert "pf_session" in ok.cookies

    metrics = await render_metrics(app())
    assert 'posfleet_login_throttled_total{limit="address"} 5' in metrics


async def test_guessing_one_password_delays_its_owner_briefly_never_locks_them_out(
    served: tuple[Client, Clock, Callable[[], web.Application]],
) -> None:
    client, clock, _ = served
    for n in range(30):
        # From many addresses (a botnet), so only the account's own limit holds.
        response = await _log_in(client, "alice", "guess", f"192.0.2.{n}")
        if response.status == 429:
            clock.now += timedelta(seconds=int(response.headers["Retry-After"]))
            response = await _log_in(client, "alice", "guess", f"192.0.2.{n}")
        assert response.status == 200
    held = await _log_in(client, "alice", PASSWORD, ALICE_DESK)
    assert held.status == 429
    assert int(held.headers["Retry-After"]) <= 30  # capped: a delay, not a lockout
    clock.now += timedelta(seconds=30)
    assert (await _log_in(client, "alice", PASSWORD, ALICE_DESK)).status == 303


async def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(
    users: AsyncEngine,
) -> None:
    clock = Clock()
    app = create_app(users, session_secret=SECRET)
    app[LOGIN_THROTTLE_KEY] = LoginThrottle(clock=clock)  # no trusted proxy
    async with TestClient(TestServer(app)) as client:
        for n in range(10):
            # A new made-up address each time: all of them count as the peer's.
            assert (await _log_in(client, f"u{n}", "guess", f"192.0.2.{n}")).status == 200
        assert (await _log_in(client, "u10", "guess", "192.0.2.99")).status == 429


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
async def test_the_throttle_survives_a_restart_and_holds_on_a_second_instance(
    database_url: str, engine: AsyncEngine
) -> None:
    async with engine.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    clock = Clock()
    async with TestClient(TestServer(_app(engine, clock))) as first:
        for n in range(10):
            assert (await _log_in(first, f"user{n}", "guess", ATTACKER)).status == 200
    # A new app on the same database (a restart), then another one beside it.
    second_engine = create_engine(database_url)
    try:
        async with (
            TestClient(TestServer(_app(engine, clock))) as restarted,
            TestClient(TestServer(_app(second_engine, clock))) as other,
        ):
            assert (await _log_in(restarted, "user10", "guess", ATTACKER)).status == 429
            assert (await _log_in(other, "user11", "guess", ATTACKER)).status == 429
            assert (await _log_in(other, "alice", PASSWORD, ALICE_DESK)).status == 303
    finally:
        await second_engine.dispose()
