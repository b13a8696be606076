"""The private Mosquitto a test session runs, with helpers to provision and disrupt it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from tests.harness.mqtt_probe import MqttProbe
from tests.harness.waiting import wait_for

CENTRAL_USER = "central"


class PrivateBroker:
    """A running ``mosquitto`` on free loopback ports, its auth store and the centre's login.

    It runs the hardened configuration of :class:`MosquittoBroker`: terminals on
    :attr:`url` (client id forced to the username), service users on :attr:`central_url`.
    :meth:`probe` and :meth:`accepts` pick the listener from the credentials.
    ``provision_terminal`` returns only once the broker accepts the new credentials:
    Mosquitto re-reads its password file asynchronously after SIGHUP.
    """

    def __init__(self, work_dir: Path) -> None:
        self.auth = BrokerAuthStore(work_dir / "auth")
        self.central: BrokerCredentials = self.auth.add_service_user(CENTRAL_USER)
        self.process = MosquittoBroker(work_dir, auth_dir=self.auth.directory)

    @property
    def host(self) -> str:
        """Loopback address the broker listens on."""
        return self.process.host

    @property
    def port(self) -> int:
        """TCP port, stable across restarts."""
        return self.process.port

    @property
    def url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the terminals' listener."""
        return self.process.url

    @property
    def central_host(self) -> str:
        """Loopback address of the centre's listener."""
        return self.process.central_host

    @property
    def central_port(self) -> int:
        """TCP port of the centre's listener (service users only), stable across restarts."""
        return self.process.central_port

    @property
    def central_url(self) -> str:
        """``mqtt://127.0.0.1:PORT`` of the centre's listener: the central settings' URL."""
        return self.process.central_url

    def address_for(self, credentials: BrokerCredentials) -> tuple[str, int]:
        """The listener ``credentials`` log in on: the centre's for service users."""
        if credentials.username in self.auth.service_users():
            return self.central_host, self.central_port
        return self.host, self.port

    def start(self) -> None:
        """Start the broker (again, after :meth:`stop`)."""
        self.process.start()

    def stop(self) -> None:
        """Stop the broker, e.g. to simulate an outage; persisted sessions survive."""
        self.process.stop()

    def restart(self) -> None:
        """Stop and start on the same port."""
        self.process.restart()

    def provision_terminal(self, terminal_id: str, timeout: float = 10.0) -> BrokerCredentials:
        """Create (or rotate) a terminal's login and wait until the broker accepts it."""
        credentials = self.auth.add_terminal(terminal_id)
        self.process.reload()
        self.wait_accepts(credentials, timeout)
        return credentials

    def wait_accepts(self, credentials: BrokerCredentials, timeout: float = 10.0) -> None:
        """Wait until a CONNECT with ``credentials`` succeeds."""
        wait_for(
            lambda: self.accepts(credentials),
            timeout,
            interval=0.05,
            description=f"the broker to accept {credentials.username!r} after a reload",
        )

    def accepts(self, credentials: BrokerCredentials) -> bool:
        """True if the broker accepts a connection with ``credentials`` right now."""
        with MqttProbe(*self.address_for(credentials), credentials) as probe:
            try:
                return not probe.try_connect(timeout=2.0).is_failure
            except (OSError, AssertionError):
                return False

    def probe(
        self,
        credentials: BrokerCredentials,
        *,
        client_id: str | None = None,
        clean_start: bool = True,
        session_expiry: int = 0,
    ) -> MqttProbe:
        """A connected :class:`MqttProbe` on the credentials' listener; the caller closes it."""
        probe = MqttProbe(
            *self.address_for(credentials),
            credentials,
            client_id=client_id,
            clean_start=clean_start,
            session_expiry=session_expiry,
        )
        return probe.connect()

    def publish_as_centre(self, messages: Sequence[tuple[str, bytes, bool]]) -> None:
        """Publish ``(topic, payload, retain)`` at QoS 1 as the centre's user (which may
        write any terminal's topics), each acknowledged before the next."""
        with self.probe(self.central) as publisher:
            for name, payload, retain in messages:
                reason = publisher.publish(name, payload, retain=retain)
                assert not reason.is_failure, reason
