"""What the agent needs from a terminal, whatever protocol the terminal speaks."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Protocol

from posfleet.contract import Component, HealthMetrics, Severity


@dataclass(frozen=True)
class TerminalIdentity:
    """Who the terminal says it is; the agent publishes it as the ``inventory``."""

    model: str
    serial: str
    hw_revision: str
    firmware_version: str
    app_versions: dict[str, str] = field(default_factory=dict)
    capabilities: list[str] = field(default_factory=list)
    merchant_id: str = ""


@dataclass(frozen=True)
class DetectedFault:
    """A fault the terminal reports; the agent turns it into a contract ``FaultEvent``."""

    code: str
    component: Component
    severity: Severity
    detail: str
    zvt_result_code: int | None = None


class DiagnosticTest(IntEnum):
    """The diagnostics a support engineer can run remotely."""

    PRINTER = 1
    CARD_READER = 2
    HOST_PING = 3
    SELF_TEST = 4


@dataclass(frozen=True)
class DiagnosticResult:
    """Outcome of one diagnostic."""

    test: DiagnosticTest
    passed: bool
    detail: str
    latency_ms: int | None = None


class TerminalDriver(Protocol):
    """Reads a terminal's identity, health and faults."""

    async def identify(self) -> TerminalIdentity:
        """Model, serial number, versions and capabilities."""
        ...

    async def read_health(self) -> HealthMetrics:
        """Every metric the terminal can measure, now."""
        ...

    async def read_faults(self) -> list[DetectedFault]:
        """Faults raised since the previous call, oldest first."""
        ...


class SupportsRemoteActions(TerminalDriver, Protocol):
    """A driver that can also act on the terminal for support staff."""

    async def print_line(self, text: str) -> None:
        """Print one line on the receipt printer."""
        ...

    async def sync_clock(self, now: datetime) -> float:
        """Set the terminal's clock; returns the offset it had before, in seconds."""
        ...

    async def reboot(self) -> None:
        """Restart the terminal (refused while a transaction is in progress)."""
        ...

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """Run one diagnostic and report its outcome."""
        ...
