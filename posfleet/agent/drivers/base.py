"""What the agent needs from a terminal, whatever protocol the terminal speaks.

:class:`TerminalDriver` is what every driver does (identity, health, faults);
:class:`SupportsRemoteActions` is what a driver does on top for support staff and for the
firmware updater. Results are plain frozen dataclasses, independent of any wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from posfleet.contract import Component, Severity

if TYPE_CHECKING:
    from posfleet.contract import HealthMetrics

HealthData = dict[str, Any]
"""A health reading as plain data: the fields of the contract's ``HealthMetrics`` (names,
nesting and bounds checked by :func:`posfleet.agent.wire.check_field`), absent when not
measured. What the agent's loop reads and publishes without building pydantic models."""


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
class DiagnosticCheck:
    """One item a diagnostic looked at (``printer``, ``battery``, ``chip`` ...)."""

    name: str
    passed: bool
    detail: str = ""


@dataclass(frozen=True)
class DiagnosticResult:
    """Outcome of one diagnostic: a verdict, a line for staff, and what was checked."""

    test: DiagnosticTest
    passed: bool
    detail: str
    latency_ms: int | None = None
    checks: list[DiagnosticCheck] = field(default_factory=list)


@dataclass(frozen=True)
class TerminalCounters:
    """Lifetime wear counters: they tell when to swap a part before it fails."""

    lines_printed: int
    paper_rolls_loaded: int
    card_insertions: int
    magstripe_swipes: int
    contactless_taps: int
    card_read_errors: int
    battery_cycles: int | None
    reboots: int
    transactions: int
    settlements: int
    firmware_updates: int


@dataclass(frozen=True)
class CollectedLogs:
    """The terminal's log lines in a time range, as the terminal wrote them.

    The text is NOT scrubbed: lines may hold card numbers; whoever uploads it must mask them.
    """

    text: str
    start: datetime
    end: datetime
    truncated: bool = False
    """True if the extract was larger than the caller's limit and was cut at a line end."""

    @property
    def lines(self) -> list[str]:
        """The text split into lines."""
        return self.text.splitlines()


@dataclass(frozen=True)
class ConfigBackup:
    """The terminal's configuration parameters (never keys, never card data).

    ``withheld`` names parameters the terminal marks secret and therefore did not export;
    a replacement terminal gets those by key injection, not from a backup.
    """

    params: dict[str, str]
    withheld: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConfigRestoreResult:
    """What a restore changed: applied keys, and rejected keys with the reason."""

    applied: list[str]
    rejected: dict[str, str] = field(default_factory=dict)


class FirmwareSlot(StrEnum):
    """The two firmware slots of an A/B terminal."""

    A = "A"
    B = "B"


@dataclass(frozen=True)
class FirmwareSlots:
    """The terminal's firmware slots and where an update stands."""

    active: FirmwareSlot
    versions: dict[FirmwareSlot, str]
    """Version installed in each slot ("" for an empty slot)."""
    pending_confirm: bool
    """The active slot was just activated and rolls back unless confirmed."""
    last_rollback: str = ""
    """Why the terminal last rolled back on its own ("" if it never did)."""


@dataclass(frozen=True)
class FirmwareTransfer:
    """The terminal's answer to the start of a firmware transfer."""

    slot: FirmwareSlot
    """The inactive slot the image is written to."""
    block_size: int
    """Largest block the terminal takes in one ``firmware_write_block``."""
    resume_offset: int = 0
    """Bytes of this same image (same SHA-256 and size) already received: continue there."""


class TerminalDriver(Protocol):
    """Reads a terminal's identity, health and faults."""

    async def identify(self) -> TerminalIdentity:
        """Model, serial number, versions and capabilities."""
        ...

    async def read_health_data(self) -> HealthData:
        """Every metric the terminal can measure, now, as plain data (the agent's loop)."""
        ...

    async def read_health(self) -> HealthMetrics:
        """The same reading as the contract's model (imports pydantic: for commands)."""
        ...

    async def read_faults(self) -> list[DetectedFault]:
        """Faults raised since the previous call, oldest first."""
        ...


@runtime_checkable
class SupportsRemoteActions(TerminalDriver, Protocol):
    """A driver that can also act on the terminal for support staff and the updater.

    Every method raises a ``SerialLinkError`` when the terminal cannot be reached, and
    :class:`~posfleet.agent.drivers.errors.TerminalRefusedError` (with the terminal's
    ``result_code`` and its ``meaning``) when the terminal says no: a reboot during a
    sale or with an unsettled batch, a secret parameter, a firmware image whose SHA-256
    does not match.
    """

    async def print_line(self, text: str) -> None:
        """Print one line on the receipt printer."""
        ...

    async def sync_clock(self, now: datetime) -> float:
        """Set the terminal's clock; returns the offset it had before, in seconds."""
        ...

    async def reboot(self) -> None:
        """Restart the terminal (refused during a transaction or with an unsettled batch)."""
        ...

    async def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """Run one diagnostic and report its outcome."""
        ...

    async def read_counters(self) -> TerminalCounters:
        """Lifetime wear counters (print head, reader, battery, reboots ...)."""
        ...

    async def collect_logs(
        self, start: datetime, end: datetime, *, max_bytes: int = 4 << 20
    ) -> CollectedLogs:
        """The log lines written in ``[start, end)``, at most ``max_bytes`` of them (unscrubbed)."""
        ...

    async def backup_config(self) -> ConfigBackup:
        """Every exportable configuration parameter; secret ones are withheld."""
        ...

    async def restore_config(self, params: dict[str, str]) -> ConfigRestoreResult:
        """Apply ``params``; the terminal rejects unknown, read-only and secret keys."""
        ...

    async def firmware_status(self) -> FirmwareSlots:
        """The A/B slots, the active one and whether it awaits confirmation."""
        ...

    async def firmware_begin(self, size: int, sha256: bytes, version: str) -> FirmwareTransfer:
        """Start (or resume) writing an image of ``size`` bytes into the inactive slot."""
        ...

    async def firmware_write_block(self, offset: int, data: bytes) -> None:
        """Write one block (at most ``block_size`` bytes) at ``offset`` of the image."""
        ...

    async def firmware_verify(self) -> None:
        """Have the terminal check the whole image against the SHA-256 given at the start."""
        ...

    async def firmware_activate(self) -> None:
        """Reboot into the verified slot; it runs on trial until confirmed."""
        ...

    async def firmware_confirm(self) -> None:
        """Keep the new slot for good (after the agent saw it healthy)."""
        ...

    async def firmware_rollback(self) -> None:
        """Go back to the previous slot and reboot into it."""
        ...
