"""Every ZVT result code and terminal status code, its meaning and what it says about a terminal.

One table (:data:`RESULT_CODES`) serves three places where ZVT carries a one-byte code:
BMP ``27`` and the first byte of an Abort ``06 1E`` (how a command ended), the negative
acknowledgement ``84 xx``, and the terminal status byte of a Status Enquiry's Completion,
which uses the same numbers (plus the few in :data:`TERMINAL_STATUS_ONLY`, where the
status byte means something other than the result code of the same number).

Each code has a class (:class:`ResultClass`): a sale that was declined or a card that could
not be read is not a terminal fault; a printer that is not ready is. Codes that name a part
of the terminal that needs fixing carry the fault they become (:func:`fault_for`).
The meanings follow the ZVT specification's list of error messages, in our own words.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from posfleet.agent.drivers.base import DetectedFault
from posfleet.contract import Component, Severity


class ResultClass(StrEnum):
    """What a result code says, for counting and for deciding whether it is a fault."""

    SUCCESS = "success"
    DECLINED = "declined"
    """The acquirer, the issuer or the card's rules said no (a business outcome)."""
    CARD_ERROR = "card_error"
    """The card could not be read or used; many in a row point at the reader."""
    CANCELLED = "cancelled"
    """Stopped by the cardholder, the cashier or a timeout."""
    REFUSED = "refused"
    """The terminal cannot do what the ECR asked (not configured, not allowed)."""
    STATE = "state"
    """A passing state, not a fault: please wait, card inserted, open batch."""
    FAULT = "fault"
    """A part of the terminal needs fixing."""


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """The fault event a result code becomes."""

    code: str
    component: Component
    severity: Severity


@dataclass(frozen=True, slots=True)
class ResultCode:
    """One entry of the table."""

    code: int
    meaning: str
    result_class: ResultClass
    fault: FaultSpec | None = None


_C, _S = Component, Severity
_PRINTER = FaultSpec("printer.not_ready", _C.PRINTER, _S.ERROR)
_UNREADABLE = FaultSpec("card_reader.card_unreadable", _C.CARD_READER, _S.WARNING)
_CHIP = FaultSpec("card_reader.chip_error", _C.CARD_READER, _S.WARNING)
_READER = FaultSpec("card_reader.defective", _C.CARD_READER, _S.ERROR)
_PIN_PAD = FaultSpec("tamper.pin_pad_defective", _C.TAMPER, _S.CRITICAL)
_NO_HOST = FaultSpec("network.no_connection", _C.NETWORK, _S.ERROR)
_HOST_SILENT = FaultSpec("network.host_not_responding", _C.NETWORK, _S.ERROR)
_COMMS = FaultSpec("network.communication_error", _C.NETWORK, _S.ERROR)
_MEMORY = FaultSpec("storage.memory_full", _C.STORAGE, _S.WARNING)
_JOURNAL = FaultSpec("storage.journal_full", _C.STORAGE, _S.WARNING)
_DUKPT = FaultSpec("keys.dukpt_exhausted", _C.KEYS, _S.CRITICAL)
_KEY = FaultSpec("keys.missing", _C.KEYS, _S.CRITICAL)
_VOLTAGE = FaultSpec("power.voltage_low", _C.POWER, _S.ERROR)
_MECHANISM = FaultSpec("card_reader.mechanism_defective", _C.CARD_READER, _S.ERROR)
_PROTOCOL = FaultSpec("serial_link.zvt_protocol_error", _C.SERIAL_LINK, _S.WARNING)
_CONFIG = FaultSpec("system.configuration_required", _C.SYSTEM, _S.ERROR)
_SYSTEM = FaultSpec("system.error", _C.SYSTEM, _S.ERROR)
_CLOCK = FaultSpec("clock.date_time_incorrect", _C.CLOCK, _S.WARNING)
_DEVICE = FaultSpec("system.device_defective", _C.SYSTEM, _S.ERROR)

_D, _E, _X = ResultClass.DECLINED, ResultClass.CARD_ERROR, ResultClass.CANCELLED
_R, _T, _F = ResultClass.REFUSED, ResultClass.STATE, ResultClass.FAULT

_TABLE: tuple[ResultCode, ...] = (
    ResultCode(0x00, "no error", ResultClass.SUCCESS),
    ResultCode(0x64, "card not readable (LRC or parity error)", _E, _UNREADABLE),
    ResultCode(0x65, "card data not present (no track data, no chip)", _E, _UNREADABLE),
    ResultCode(0x66, "processing error (also card reader mechanism)", _E, _UNREADABLE),
    ResultCode(0x67, "function not permitted for debit cards", _R),
    ResultCode(0x68, "function not permitted for credit and fuel cards", _R),
    ResultCode(0x6A, "turnover file full", _F, _JOURNAL),
    ResultCode(0x6B, "function deactivated (terminal not registered)", _R),
    ResultCode(0x6C, "aborted by timeout or the abort key", _X),
    ResultCode(0x6E, "card on the blocked list", _D),
    ResultCode(0x6F, "wrong currency", _R),
    ResultCode(0x71, "credit not sufficient (chip card)", _D),
    ResultCode(0x72, "chip error", _E, _CHIP),
    ResultCode(0x73, "card data incorrect (country code, checksum)", _E),
    ResultCode(0x74, "DUKPT engine exhausted", _F, _DUKPT),
    ResultCode(0x75, "text not authentic", _R),
    ResultCode(0x76, "PAN not on the white list", _D),
    ResultCode(0x77, "end-of-day batch not possible", _R),
    ResultCode(0x78, "card expired", _D),
    ResultCode(0x79, "card not yet valid", _D),
    ResultCode(0x7A, "card unknown", _D),
    ResultCode(0x7B, "fallback to magnetic stripe not possible (girocard)", _E),
    ResultCode(0x7C, "fallback to magnetic stripe not possible", _E),
    ResultCode(0x7D, "communication error (module absent or not answering)", _F, _COMMS),
    ResultCode(0x7E, "fallback to magnetic stripe not possible, debit advice possible", _E),
    ResultCode(0x83, "function not possible", _R),
    ResultCode(0x85, "key missing", _F, _KEY),
    ResultCode(0x89, "PIN pad defective", _F, _PIN_PAD),
    ResultCode(0x9A, "ZVT protocol error (parse error, mandatory field missing)", _F, _PROTOCOL),
    ResultCode(0x9B, "error from dial-up or communication fault", _F, _COMMS),
    ResultCode(0x9C, "please wait", _T),
    ResultCode(0xA0, "receiver not ready", _F, _HOST_SILENT),
    ResultCode(0xA1, "remote station does not respond", _F, _HOST_SILENT),
    ResultCode(0xA3, "no connection", _F, _NO_HOST),
    ResultCode(0xA4, "submission of Geldkarte not possible", _R),
    ResultCode(0xA5, "function not allowed by PCI-DSS / P2PE rules", _R),
    ResultCode(0xB1, "memory full", _F, _MEMORY),
    ResultCode(0xB2, "merchant journal full", _F, _JOURNAL),
    ResultCode(0xB4, "already reversed", _R),
    ResultCode(0xB5, "reversal not possible", _R),
    ResultCode(0xB7, "pre-authorisation incorrect or amount wrong", _R),
    ResultCode(0xB8, "error in pre-authorisation", _R),
    ResultCode(0xBF, "supply voltage too low", _F, _VOLTAGE),
    ResultCode(0xC0, "card locking mechanism defective", _F, _MECHANISM),
    ResultCode(0xC1, "merchant card locked", _F, _CONFIG),
    ResultCode(0xC2, "diagnosis required", _F, _CONFIG),
    ResultCode(0xC3, "maximum amount exceeded", _D),
    ResultCode(0xC4, "card profile invalid (new card profiles must be loaded)", _F, _CONFIG),
    ResultCode(0xC5, "payment method not supported", _R),
    ResultCode(0xC6, "currency not applicable", _R),
    ResultCode(0xC8, "amount too small", _D),
    ResultCode(0xC9, "maximum transaction amount too small", _R),
    ResultCode(0xCB, "function only allowed in euro", _R),
    ResultCode(0xCC, "printer not ready", _F, _PRINTER),
    ResultCode(0xCD, "cashback not possible", _R),
    ResultCode(0xD2, "function not permitted for service cards", _R),
    ResultCode(0xDC, "card inserted", _T),
    ResultCode(0xDD, "error during card eject (motorised reader)", _F, _MECHANISM),
    ResultCode(0xDE, "error during card insertion (motorised reader)", _F, _MECHANISM),
    ResultCode(0xE0, "remote maintenance activated", _T),
    ResultCode(0xE2, "card reader does not answer / card reader defective", _F, _READER),
    ResultCode(0xE3, "shutter closed", _F, _MECHANISM),
    ResultCode(0xE4, "terminal activation required", _F, _CONFIG),
    ResultCode(0xE7, "at least one goods group not found", _R),
    ResultCode(0xE8, "no goods groups table loaded", _R),
    ResultCode(0xE9, "restriction code not permitted", _R),
    ResultCode(0xEA, "card code not permitted", _R),
    ResultCode(0xEB, "function not executable (PIN algorithm unknown)", _R),
    ResultCode(0xEC, "PIN processing not possible", _F, _PIN_PAD),
    ResultCode(0xED, "PIN pad defective", _F, _PIN_PAD),
    ResultCode(0xF0, "open end-of-day batch present", _T),
    ResultCode(0xF1, "offline error (girocard / Maestro)", _F, _COMMS),
    ResultCode(0xF5, "OPT error", _F, _CONFIG),
    ResultCode(0xF6, "OPT data not available (OPT personalisation required)", _F, _CONFIG),
    ResultCode(0xFA, "error transmitting offline transactions (clearing error)", _F, _COMMS),
    ResultCode(0xFB, "turnover data set defective", _F, _SYSTEM),
    ResultCode(0xFC, "necessary device not present or defective", _F, _DEVICE),
    ResultCode(0xFD, "baud rate not supported", _F, _PROTOCOL),
    ResultCode(0xFE, "register unknown", _R),
    ResultCode(0xFF, "system error (other or unknown error)", _F, _SYSTEM),
)

RESULT_CODES: dict[int, ResultCode] = {entry.code: entry for entry in _TABLE}
"""Every result code the ZVT specification lists, except the acquirer's range ``01``-``63``."""

TERMINAL_STATUS_ONLY: dict[int, ResultCode] = {
    entry.code: entry
    for entry in (
        ResultCode(0x51, "initialisation required", _F, _CONFIG),
        ResultCode(0x62, "date/time incorrect", _F, _CLOCK),
        ResultCode(0x9D, "partial issue of goods", _T),
        ResultCode(0xDF, "out of order", _F, _SYSTEM),
        ResultCode(0xE1, "card not completely ejected", _F, _MECHANISM),
    )
}
"""Terminal status codes whose number is an acquirer code (or unused) as a result code."""

ACQUIRER_RANGE = range(0x01, 0x64)
"""``01``-``63``: the acquirer's or issuer's answer (ISO 8583 style, ``05`` do not honour)."""


def result_code(code: int) -> ResultCode:
    """The table entry for a result code; the acquirer range and unlisted codes included."""
    known = RESULT_CODES.get(code)
    if known is not None:
        return known
    if code in ACQUIRER_RANGE:
        return ResultCode(code, f"declined by the acquirer (code {code:02d})", _D)
    return ResultCode(code, f"result code 0x{code:02X} (not in the ZVT list)", _F)


def terminal_status(code: int) -> ResultCode:
    """The table entry for the terminal status byte of a Status Enquiry's Completion."""
    if code in TERMINAL_STATUS_ONLY:
        return TERMINAL_STATUS_ONLY[code]
    if code == 0x00:
        return ResultCode(0x00, "terminal ready", ResultClass.SUCCESS)
    return result_code(code)


def fault_for(code: int, *, status: bool = False) -> DetectedFault | None:
    """The fault a result code (``status``: a terminal status code) reports, or None.

    Success and passing states are no fault. A code the table gives no fault for (a decline
    seen where the terminal should say how it is, an unlisted code) still becomes an info
    event ``system.zvt_xx``, so nobody misses a code this agent does not place.
    """
    entry = terminal_status(code) if status else result_code(code)
    if entry.result_class in (ResultClass.SUCCESS, ResultClass.STATE):
        return None
    if entry.fault is None:
        return DetectedFault(
            f"system.zvt_{code:02x}",
            Component.SYSTEM,
            Severity.INFO,
            f"terminal reports ZVT code 0x{code:02X}: {entry.meaning}",
            code,
        )
    spec = entry.fault
    return DetectedFault(
        spec.code, spec.component, spec.severity, f"{entry.meaning} (ZVT 0x{code:02X})", code
    )


def iso8583_code(code: int) -> str | None:
    """The acquirer's ISO 8583 response code a ZVT code ``01``-``63`` carries (0x33 is "51").

    ZVT puts the acquirer's two decimal digits in one binary byte (``01``-``63`` hex is 1 to
    99); None for codes outside that range.
    """
    return f"{code:02d}" if code in ACQUIRER_RANGE else None
