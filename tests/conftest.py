"""Session-wide fixtures: the private Mosquitto broker, fresh SQLite URLs, MQTT probes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.broker_auth import BrokerCredentials
from posfleet.store import create_engine, upgrade, upgrade_engine
from posfleet.store.schema import metadata
from tests.harness import MqttProbe, PrivateBroker, require_binary
from tests.harness.private_postgres import PrivatePostgres


@pytest.fixture(scope="session")
def session_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateBroker]:
    """The one ``mosquitto`` of the test session; tests use :func:`broker`."""
    require_binary("mosquitto", "mosquitto")
    private = PrivateBroker(tmp_path_factory.mktemp("mosquitto"))
    private.start()
    try:
        yield private
    finally:
        private.stop()


@pytest.fixture
def broker(session_broker: PrivateBroker) -> PrivateBroker:
    """A real ``mosquitto`` on a free loopback port with generated passwords and ACL.

    Shared by the whole session (retained messages and persistent sessions included):
    provision terminals with ids unique to your test and count only their messages.
    An outage test may ``stop()`` it; the next test finds it running again.
    """
    if not session_broker.process.running:
        session_broker.start()
    return session_broker


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[PrivateBroker]:
    """A broker of this test's own, for tests that need one nobody else has touched."""
    require_binary("mosquitto", "mosquitto")
    private = PrivateBroker(tmp_path / "mosquitto")
    private.start()
    try:
        yield private
    finally:
        private.stop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database URL (aiosqlite driver) for this test alone."""
    return f"sqlite+aiosqlite:///{tmp_path / 'posfleet.db'}"


@pytest.fixture
def mqtt_probe(broker: PrivateBroker) -> Iterator[Callable[[BrokerCredentials], MqttProbe]]:
    """Connect :class:`MqttProbe` clients to the session broker; all closed after the test."""
    probes: list[MqttProbe] = []

    def connect(credentials: BrokerCredentials) -> MqttProbe:
        probe = broker.probe(credentials)
        probes.append(probe)
        return probe

    yield connect
    for probe in probes:
        probe.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PrivatePostgres]:
    """A private PostgreSQL server for the whole session, on a free loopback port."""
    server = PrivatePostgres()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def sqlite_engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a new, migrated, empty SQLite file: for tests of one backend only."""
    eng = create_engine(sqlite_url)
    await upgrade_engine(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """A PostgreSQL database at the latest migration, shared by the session's store tests."""
    url = postgres_server.create_database()
    try:
        upgrade(url)
        yield url
    finally:
        postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Run the test once per backend: a new SQLite file, then the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'posfleet.db'}"
    url: str = request.getfixturevalue("migrated_postgres_url")
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated database holding no rows, on each backend in turn."""
    if database_url.startswith("sqlite"):
        eng = create_engine(database_url)
        await upgrade_engine(eng)
    else:
        # Room for tests that open many connections at once (concurrency tests).
        eng = create_engine(database_url, pool_size=20)
        async with eng.begin() as conn:
            names = ", ".join(t.name for t in metadata.sorted_tables)
            await conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    try:
        yield eng
    finally:
        await eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database on each backend in turn: for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    server: PrivatePostgres = request.getfixturevalue("postgres_server")
    url = server.create_database()
    try:
        yield url
    finally:
        server.drop_database(url)


@pytest.fixture
async def empty_engine(empty_database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on that empty database: a migration test upgrades it to where it starts."""
    engine = create_engine(empty_database_url)
    try:
        yield engine
    finally:
        await engine.dispose()
