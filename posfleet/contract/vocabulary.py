"""The contract's words without its models: enumerations, the payload limit, the clock.

Pure and free of pydantic, so that code which only names things of the contract (the
agent's idle loop: a printer status, a fault's component, a payload's size limit) imports
it at no cost. The payload models (:mod:`posfleet.contract.health` and the others) use
these very classes: there is one definition of each.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

MAX_PAYLOAD_BYTES = 64 * 1024
"""Largest payload the centre accepts on any channel."""


def utcnow() -> datetime:
    """The current time in UTC, as every payload timestamp is written."""
    return datetime.now(UTC)


class PrinterStatus(StrEnum):
    """State of the receipt printer."""

    OK = "ok"
    PAPER_LOW = "paper_low"
    NO_PAPER = "no_paper"
    JAM = "jam"
    COVER_OPEN = "cover_open"
    OVERHEAT = "overheat"
    FAULT = "fault"

    @property
    def working(self) -> bool:
        """Whether the printer can print: ``ok`` or ``paper_low`` (it still prints).

        The one definition the printer-fault counts of telemetry, the hourly rollups and
        the built-in rule's ``clear_when`` share (a test checks the rule agrees)."""
        return self in PRINTER_WORKING


PRINTER_WORKING: frozenset[PrinterStatus] = frozenset({PrinterStatus.OK, PrinterStatus.PAPER_LOW})
"""The states in which the printer can print (see :attr:`PrinterStatus.working`)."""


class NetworkType(StrEnum):
    """The link a terminal uses to reach its acquirer."""

    ETHERNET = "ethernet"
    WIFI = "wifi"
    CELLULAR = "cellular"
    DIALUP = "dialup"


class RebootReason(StrEnum):
    """Why the terminal last started."""

    POWER_ON = "power_on"
    USER = "user"
    REMOTE = "remote"
    WATCHDOG = "watchdog"
    CRASH = "crash"
    FIRMWARE_UPDATE = "firmware_update"
    LOW_BATTERY = "low_battery"
    UNKNOWN = "unknown"


class Component(StrEnum):
    """The part of a terminal a fault belongs to."""

    PRINTER = "printer"
    CARD_READER = "card_reader"
    PIN_PAD = "pin_pad"
    TAMPER = "tamper"
    BATTERY = "battery"
    POWER = "power"
    TEMPERATURE = "temperature"
    NETWORK = "network"
    STORAGE = "storage"
    CLOCK = "clock"
    KEYS = "keys"
    FIRMWARE = "firmware"
    SYSTEM = "system"
    SERIAL_LINK = "serial_link"


class Severity(StrEnum):
    """How urgent a fault is, from least to most."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


class CommandStatus(StrEnum):
    """Final outcome of a command on the terminal."""

    OK = "ok"
    FAILED = "failed"
    REJECTED = "rejected"
    EXPIRED = "expired"


class UpdateState(StrEnum):
    """Where a terminal's update stands."""

    ACCEPTED = "accepted"
    WAITING_WINDOW = "waiting_window"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    INSTALLING = "installing"
    REBOOTING = "rebooting"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"
