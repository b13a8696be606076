"""Errors of the central service's composition root (settings, broker, CLI)."""

from __future__ import annotations

from pathlib import Path


class CentralError(Exception):
    """Base class of every error raised by :mod:`posfleet.central`."""


class BrokerAuthError(CentralError):
    """Broker credentials or ACL files cannot be read, written or changed as asked."""


class MosquittoError(CentralError):
    """The private Mosquitto broker cannot be started, reloaded or stopped."""


class MosquittoNotInstalledError(MosquittoError):
    """The ``mosquitto`` binary is not installed."""

    def __init__(self, binary: str) -> None:
        super().__init__(
            f"the MQTT broker binary {binary!r} was not found; "
            "install the Debian package 'mosquitto' (apt-get install mosquitto)"
        )
        self.binary = binary


class MosquittoStartError(MosquittoError):
    """Mosquitto exited or did not accept connections during start-up."""

    def __init__(self, message: str, log_path: Path) -> None:
        super().__init__(f"{message} (broker log: {log_path})")
        self.log_path = log_path


class TlsMaterialError(CentralError):
    """A certificate or key cannot be made, read or written as asked."""


def database_unusable(exc: BaseException) -> str:
    """The command line's one line for a database error: its first line, and the way out."""
    reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
    return (
        f"posfleet: error: cannot use the database: {reason}; "
        "create or migrate it with 'posfleet db upgrade'"
    )
