"""The private Mosquitto a test session runs, with helpers to provision and disrupt it."""

from __future__ import annotations

from pathlib import Path

from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from tests.harness.mqtt_probe import MqttProbe
from tests.harness.waiting import wait_for

CENTRAL_USER = "central"


class PrivateBroker:
    """A running ``mosquitto`` on a free loopback port, its auth store and the centre's login.

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
        """``mqtt://127.0.0.1:PORT``."""
        return self.process.url

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
        with MqttProbe(self.host, self.port, credentials) as probe:
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
        """A connected :class:`MqttProbe`; the caller closes it."""
        probe = MqttProbe(
            self.host,
            self.port,
            credentials,
            client_id=client_id,
            clean_start=clean_start,
            session_expiry=session_expiry,
        )
        return probe.connect()
