"""Session-wide fixtures: the private Mosquitto broker, fresh SQLite URLs, MQTT probes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posfleet.central.broker_auth import BrokerCredentials
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


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PrivatePostgres) -> Iterator[str]:
    """An empty PostgreSQL database (not migrated) shared by the session's store tests."""
    url = postgres_server.create_database()
    try:
        yield url
    finally:
        postgres_server.drop_database(url)
