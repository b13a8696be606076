"""The faults a simulated terminal can suffer, the events they raise and their ZVT codes."""

from __future__ import annotations

from enum import StrEnum

from posfleet.agent.drivers.base import DetectedFault
from posfleet.contract import Component, Severity


class FaultName(StrEnum):
    """Faults that can be injected into a simulated terminal (scenario file or run time)."""

    PAPER_OUT = "paper_out"
    PRINTER_JAM = "printer_jam"
    COVER_OPEN = "cover_open"
    OVERHEAT = "overheat"
    HOST_DOWN = "host_down"
    HOST_NOT_RESPONDING = "host_not_responding"
    READER_ERRORS = "reader_errors"
    CHIP_ERROR = "chip_error"
    READER_DEFECTIVE = "reader_defective"
    TAMPER = "tamper"
    PIN_PAD_DEFECTIVE = "pin_pad_defective"
    LOW_BATTERY = "low_battery"
    CLOCK_DRIFT = "clock_drift"
    STORAGE_FULL = "storage_full"
    JOURNAL_FULL = "journal_full"
    DUKPT_EXHAUSTED = "dukpt_exhausted"
    KEY_MISSING = "key_missing"
    REBOOT_LOOP = "reboot_loop"
    FIRMWARE_BOOT_LOOP = "firmware_boot_loop"
    """The next firmware image activated fails to boot (and the terminal rolls back)."""


_C, _S = Component, Severity
FAULT_EVENTS: dict[FaultName, tuple[str, Component, Severity, str, int | None]] = {
    FaultName.PAPER_OUT: ("printer.no_paper", _C.PRINTER, _S.ERROR, "paper roll empty", 0xCC),
    FaultName.PRINTER_JAM: ("printer.jam", _C.PRINTER, _S.ERROR, "paper jam", 0xCC),
    FaultName.COVER_OPEN: (
        "printer.cover_open",
        _C.PRINTER,
        _S.WARNING,
        "printer cover open",
        0xCC,
    ),
    FaultName.OVERHEAT: (
        "temperature.overheat",
        _C.TEMPERATURE,
        _S.ERROR,
        "terminal above 60 C, printer stopped",
        None,
    ),
    FaultName.HOST_DOWN: (
        "network.host_unreachable",
        _C.NETWORK,
        _S.ERROR,
        "acquirer host not reachable",
        0xA3,
    ),
    FaultName.HOST_NOT_RESPONDING: (
        "network.host_not_responding",
        _C.NETWORK,
        _S.ERROR,
        "acquirer host connected but does not answer",
        0xA1,
    ),
    FaultName.READER_ERRORS: (
        "card_reader.read_errors",
        _C.CARD_READER,
        _S.WARNING,
        "card reads failing",
        0x64,
    ),
    FaultName.CHIP_ERROR: (
        "card_reader.chip_error",
        _C.CARD_READER,
        _S.WARNING,
        "chip cards fail to read",
        0x72,
    ),
    FaultName.READER_DEFECTIVE: (
        "card_reader.defective",
        _C.CARD_READER,
        _S.ERROR,
        "card reader does not answer",
        0xE2,
    ),
    FaultName.TAMPER: (
        "tamper.detected",
        _C.TAMPER,
        _S.CRITICAL,
        "tamper switch tripped; terminal must be replaced",
        0x89,
    ),
    FaultName.PIN_PAD_DEFECTIVE: (
        "tamper.pin_pad_defective",
        _C.PIN_PAD,
        _S.CRITICAL,
        "PIN pad defective; terminal must be replaced",
        0xED,
    ),
    FaultName.LOW_BATTERY: (
        "battery.low",
        _C.BATTERY,
        _S.WARNING,
        "battery below 15% and not charging",
        None,
    ),
    FaultName.CLOCK_DRIFT: (
        "clock.drift",
        _C.CLOCK,
        _S.WARNING,
        "clock off by more than 60 s",
        None,
    ),
    FaultName.STORAGE_FULL: ("storage.full", _C.STORAGE, _S.WARNING, "storage above 90%", 0xB1),
    FaultName.JOURNAL_FULL: (
        "storage.journal_full",
        _C.STORAGE,
        _S.WARNING,
        "merchant journal full; run end-of-day",
        0xB2,
    ),
    FaultName.DUKPT_EXHAUSTED: (
        "keys.dukpt_exhausted",
        _C.KEYS,
        _S.CRITICAL,
        "DUKPT key exhausted; no more PIN transactions",
        0x74,
    ),
    FaultName.KEY_MISSING: (
        "keys.missing",
        _C.KEYS,
        _S.CRITICAL,
        "payment key missing; key injection needed",
        0x85,
    ),
    FaultName.REBOOT_LOOP: (
        "system.watchdog_reset",
        _C.SYSTEM,
        _S.ERROR,
        "terminal restarted by its watchdog",
        None,
    ),
    FaultName.FIRMWARE_BOOT_LOOP: (
        "firmware.rolled_back",
        _C.FIRMWARE,
        _S.ERROR,
        "new firmware failed to boot; previous slot restored",
        None,
    ),
}


def fault_event(name: FaultName, detail: str | None = None) -> DetectedFault:
    """The event a terminal raises when ``name`` happens."""
    code, component, severity, default_detail, zvt = FAULT_EVENTS[name]
    return DetectedFault(code, component, severity, detail or default_detail, zvt)


ZVT_STATUS_PRIORITY = (
    FaultName.TAMPER,
    FaultName.PIN_PAD_DEFECTIVE,
    FaultName.KEY_MISSING,
    FaultName.DUKPT_EXHAUSTED,
    FaultName.READER_DEFECTIVE,
    FaultName.CHIP_ERROR,
    FaultName.READER_ERRORS,
    FaultName.PRINTER_JAM,
    FaultName.COVER_OPEN,
    FaultName.PAPER_OUT,
    FaultName.STORAGE_FULL,
    FaultName.JOURNAL_FULL,
)
"""Faults a ZVT terminal shows in its status, most urgent first: it has room for one code."""

ZVT_HOST_FAULTS = (FaultName.HOST_DOWN, FaultName.HOST_NOT_RESPONDING)
"""Faults a ZVT terminal only finds out about in a Diagnosis (it contacts the host)."""
