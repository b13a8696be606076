"""A private Mosquitto broker run as a child process, for the demo and the tests.

The broker listens on loopback only, refuses anonymous clients and authenticates every
client against the files of a :class:`~posfleet.central.broker_auth.BrokerAuthStore`.
Persistence is on, so QoS 1 messages queued for a disconnected persistent session
survive :meth:`MosquittoBroker.restart`.

It runs the hardened configuration production should copy (docs/operations-broker.md):
two listeners with their own logins. On the terminals' listener the broker replaces
whatever client id a client sends with its username (``use_username_as_clientid``), so
one terminal's credentials can only ever reach that terminal's own session; only
terminal logins work there. The centre's listener accepts only the service users and
keeps their client ids, so several central instances can share a subscription. Packets
above :data:`TERMINAL_MAX_PACKET_BYTES` are refused: the sender is disconnected instead
of getting a PUBACK for a message nobody will ever receive.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from posfleet.central.broker_auth import BrokerAuthStore
from posfleet.central.errors import (
    MosquittoError,
    MosquittoNotInstalledError,
    MosquittoStartError,
)
from posfleet.contract import MAX_PAYLOAD_BYTES

# Debian installs the broker in /usr/sbin, which is not on an ordinary user's PATH.
_EXTRA_SEARCH_PATH = ("/usr/sbin", "/usr/local/sbin")

# Logged once every listener is bound; a successful TCP connect alone could reach
# whichever other process already holds the port.
_RUNNING_LINE = re.compile(rb"mosquitto version \S+ running")

CENTRAL_HOST = "127.0.0.1"
"""The centre's listener is never reachable from the terminals' network."""

DEFAULT_MAX_QUEUED_MESSAGES = 250_000
"""Per-client queue: room for a 200,000-message backlog for an offline centre."""

PACKET_HEADROOM_BYTES = 1024
"""Room for a PUBLISH's fixed header, topic, packet id and properties around its payload
(a contract topic is under 100 bytes)."""

TERMINAL_MAX_PACKET_BYTES = MAX_PAYLOAD_BYTES + PACKET_HEADROOM_BYTES
"""The broker's ``max_packet_size``: a packet above it disconnects its sender.

Mosquitto 2.0 applies it to every client; the centre's own limit (the Maximum Packet
Size its ingest declares at CONNECT) is far above it, so whatever the broker accepted
reaches the centre, which dead-letters a payload above the contract's limit itself.
"""


def find_mosquitto(binary: str = "mosquitto") -> str:
    """The path of the ``mosquitto`` executable, or raise :class:`MosquittoNotInstalledError`."""
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *_EXTRA_SEARCH_PATH])
    found = shutil.which(binary, path=search)
    if found is None:
        raise MosquittoNotInstalledError(binary)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class MosquittoBroker:
    """One ``mosquitto`` child process with a generated configuration.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; the process is
    also terminated when this object is garbage-collected or the interpreter exits.
    ``port`` is the terminals' listener, ``central_port`` the centre's (always on
    loopback); ``0`` picks a free port once, and restarts keep it.
    """

    def __init__(
        self,
        work_dir: Path | str,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        central_port: int = 0,
        auth_dir: Path | str | None = None,
        max_queued_messages: int = DEFAULT_MAX_QUEUED_MESSAGES,
        max_packet_size: int = TERMINAL_MAX_PACKET_BYTES,
        start_timeout: float = 10.0,
        binary: str = "mosquitto",
    ) -> None:
        self.work_dir = Path(work_dir).resolve()
        self._host = host
        self._port = port or free_port(host)
        self._central_port = central_port or free_port(CENTRAL_HOST)
        self.max_packet_size = max_packet_size
        self.auth_dir = Path(auth_dir).resolve() if auth_dir else self.work_dir / "auth"
        self.max_queued_messages = max_queued_messages
        self.start_timeout = start_timeout
        self._binary = binary
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._finalizer: weakref.finalize[..., MosquittoBroker] | None = None
        self._log_offset = 0

    @property
    def host(self) -> str:
        """The loopback address the broker listens on."""
        return self._host

    @property
    def port(self) -> int:
        """The TCP port the broker listens on."""
        return self._port

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of the terminals' listener, as the agents expect it."""
        return f"mqtt://{self._host}:{self._port}"

    @property
    def central_host(self) -> str:
        """The address of the centre's listener: loopback."""
        return CENTRAL_HOST

    @property
    def central_port(self) -> int:
        """The TCP port of the centre's listener."""
        return self._central_port

    @property
    def central_url(self) -> str:
        """``mqtt://127.0.0.1:port`` of the centre's listener, for the central settings."""
        return f"mqtt://{CENTRAL_HOST}:{self._central_port}"

    @property
    def config_path(self) -> Path:
        """The generated ``mosquitto.conf``."""
        return self.work_dir / "mosquitto.conf"

    @property
    def log_path(self) -> Path:
        """The broker's own log file."""
        return self.work_dir / "mosquitto.log"

    @property
    def stderr_path(self) -> Path:
        """Where the broker's stderr goes: configuration errors before logging starts."""
        return self.work_dir / "mosquitto.stderr"

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id while it runs."""
        return self._process.pid if self.running and self._process else None

    def render_config(self) -> str:
        """The ``mosquitto.conf`` this broker runs with."""
        auth = BrokerAuthStore(self.auth_dir)
        # As root, Mosquitto would switch to the 'mosquitto' user, which cannot read
        # our 0600 files; naming the current user keeps it where it is.
        user = pwd.getpwuid(os.geteuid()).pw_name
        return "\n".join(
            [
                "# Generated by posfleet (posfleet.central.mosquitto); edits are overwritten.",
                f"user {user}",
                # Each listener names its own logins: terminals never reach the centre's.
                "per_listener_settings true",
                f"max_packet_size {self.max_packet_size}",
                "persistence true",
                f"persistence_location {self.work_dir / 'data'}/",
                "persistence_file mosquitto.db",
                # Bounds what a crash (not a clean stop, which always saves) can lose.
                "autosave_interval 30",
                f"max_queued_messages {self.max_queued_messages}",
                "max_queued_bytes 0",
                f"log_dest file {self.log_path}",
                "log_type error",
                "log_type warning",
                "log_type notice",
                "log_type information",
                "connection_messages true",
                "log_timestamp_format %Y-%m-%dT%H:%M:%S",
                "",
                "# Terminals: the client id is the username (the terminal id), whatever the",
                "# client sends, so a terminal's login cannot take over any other session.",
                f"listener {self._port} {self._host}",
                "allow_anonymous false",
                "use_username_as_clientid true",
                f"password_file {auth.terminals_passwd_path}",
                f"acl_file {auth.acl_path}",
                "",
                "# The central services: loopback only, service users only, own client ids.",
                f"listener {self._central_port} {CENTRAL_HOST}",
                "allow_anonymous false",
                f"password_file {auth.services_passwd_path}",
                f"acl_file {auth.acl_path}",
                "",
            ]
        )

    def start(self) -> None:
        """Write the configuration, start ``mosquitto`` and wait until it accepts TCP."""
        if self.running:
            raise MosquittoError(f"mosquitto is already running (pid {self.pid})")
        executable = find_mosquitto(self._binary)
        (self.work_dir / "data").mkdir(parents=True, exist_ok=True, mode=0o700)
        self.config_path.write_text(self.render_config(), encoding="utf-8")
        self._stderr = self.stderr_path.open("wb")
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process = subprocess.Popen(
            [executable, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stderr,
            stderr=self._stderr,
            # Its own process group: a Ctrl-C in the terminal must not kill the broker
            # before the clients it serves have said goodbye; we stop it last, ourselves.
            start_new_session=True,
        )
        self._finalizer = weakref.finalize(self, _terminate, self._process)
        try:
            self._wait_until_listening()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the broker: SIGTERM (it saves its persistence file), then SIGKILL."""
        process, self._process = self._process, None
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if process is not None:
            _terminate(process, timeout)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def restart(self) -> None:
        """Stop and start again on the same port, keeping persisted sessions."""
        self.stop()
        self.start()

    def reload(self) -> None:
        """Re-read the password and ACL files (SIGHUP); Mosquitto applies it asynchronously."""
        if self._process is None or not self.running:
            raise MosquittoError("mosquitto is not running; cannot reload it")
        self._process.send_signal(signal.SIGHUP)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        process = self._process
        if process is None:
            raise MosquittoError("mosquitto was not started")
        deadline = time.monotonic() + self.start_timeout
        while True:
            code = process.poll()
            if code is not None:
                raise MosquittoStartError(
                    f"mosquitto exited with status {code} during start-up: "
                    f"{_tail(self.stderr_path) or _tail(self.log_path)}",
                    self.log_path,
                )
            if self._logged_running() and all(map(self._accepts_tcp, self._ports())):
                return
            if time.monotonic() > deadline:
                raise MosquittoStartError(
                    f"mosquitto did not accept connections on {self._host}:{self._port} "
                    f"within {self.start_timeout:.0f} s",
                    self.log_path,
                )
            time.sleep(0.02)

    def _logged_running(self) -> bool:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_offset)
                return _RUNNING_LINE.search(log.read()) is not None
        except FileNotFoundError:
            return False

    def _ports(self) -> list[tuple[str, int]]:
        return [(self._host, self._port), (CENTRAL_HOST, self._central_port)]

    def _accepts_tcp(self, address: tuple[str, int]) -> bool:
        try:
            with socket.create_connection(address, timeout=0.5):
                return True
        except OSError:
            return False


def _terminate(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _tail(path: Path, lines: int = 5) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())
