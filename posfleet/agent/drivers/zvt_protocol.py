"""The slice of ZVT the agent uses on unmodified ECR terminals, sans-IO.

Commands (ECR to terminal): Status Enquiry ``05 01`` and Diagnosis ``06 70``. The terminal
acknowledges with ``80 00 00`` (or refuses with ``84 xx``), then, holding the master rights,
sends Status-Information ``04 0F``, Intermediate Status ``04 FF`` and Print Line ``06 D1``
messages (each answered ``80 00 00`` by the ECR) and ends with Completion ``06 0F`` or
Abort ``06 1E <result code>``. Status messages carry bitmap fields (BMPs): ``27`` the
result code, ``29`` the terminal id (4 bytes BCD), ``06`` a TLV container.

Only the BMPs whose layout is certain are decoded; the parse stops, without failing, at
the first one it does not know, since its length cannot be known either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from posfleet.agent.drivers.base import DetectedFault
from posfleet.agent.serial.apdu import Apdu
from posfleet.contract import Component, Severity

DEFAULT_PASSWORD = "000000"


class Control(IntEnum):
    """Class and instruction of the ZVT messages the agent meets, as one 16-bit number."""

    STATUS_ENQUIRY = 0x0501
    DIAGNOSIS = 0x0670
    STATUS_INFORMATION = 0x040F
    INTERMEDIATE_STATUS = 0x04FF
    COMPLETION = 0x060F
    ABORT = 0x061E
    PRINT_LINE = 0x06D1
    PRINT_TEXT_BLOCK = 0x06D3


class Bmp(IntEnum):
    """Bitmap field numbers used here."""

    TLV_CONTAINER = 0x06
    STATUS_BYTE = 0x19
    RESULT_CODE = 0x27
    TERMINAL_ID = 0x29
    CURRENCY_CODE = 0x49


_FIXED_BMP_BYTES = {
    0x01: 1, 0x02: 1, 0x03: 1, 0x04: 6, 0x05: 1, 0x0B: 3, 0x0C: 3, 0x0D: 2, 0x0E: 2,
    0x17: 2, 0x19: 1, 0x27: 1, 0x29: 4, 0x2A: 15, 0x3A: 2, 0x3B: 8, 0x49: 2, 0x87: 2,
    0x8A: 1,
}  # fmt: skip
_LLVAR_BMPS = {0x22, 0x23, 0x2D, 0x8B}
_LLLVAR_BMPS = {0x24, 0x3C}


def control(apdu: Apdu) -> int:
    """The APDU's class and instruction as one number (``0x040F`` ...)."""
    return apdu.cls << 8 | apdu.ins


def _bcd(digits: str) -> bytes:
    if len(digits) % 2 or not digits.isdigit():
        raise ValueError(f"{digits!r} is not an even number of decimal digits")
    return bytes.fromhex(digits)


def status_enquiry(password: str = DEFAULT_PASSWORD) -> Apdu:
    """``05 01 03 <password, 3 bytes BCD>``."""
    return Apdu(0x05, 0x01, _bcd(password))


def diagnosis() -> Apdu:
    """``06 70 00``."""
    return Apdu(0x06, 0x70)


@dataclass
class Bitmaps:
    """The BMP fields of a status message; ``unparsed`` holds what could not be decoded."""

    fields: dict[int, bytes] = field(default_factory=dict)
    unparsed: bytes = b""

    @property
    def result_code(self) -> int | None:
        """BMP 27."""
        value = self.fields.get(Bmp.RESULT_CODE)
        return value[0] if value else None

    @property
    def terminal_id(self) -> str | None:
        """BMP 29 as its 8 digits."""
        value = self.fields.get(Bmp.TERMINAL_ID)
        return value.hex() if value else None


def _ll_length(data: bytes, pos: int, digits: int) -> int | None:
    # LLVAR / LLLVAR lengths are digits in the low nibbles of F0..F9 bytes.
    raw = data[pos : pos + digits]
    if len(raw) < digits or any(b & 0xF0 != 0xF0 or b & 0x0F > 9 for b in raw):
        return None
    return int("".join(str(b & 0x0F) for b in raw))


def _tlv_container_length(data: bytes, pos: int) -> tuple[int, int] | None:
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, 1
    width = first & 0x7F
    if width not in (1, 2) or pos + 1 + width > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), 1 + width


def parse_bitmaps(data: bytes) -> Bitmaps:
    """Split a status message's data into its BMP fields (never raises)."""
    out = Bitmaps()
    pos = 0
    while pos < len(data):
        bmp = data[pos]
        start = pos + 1
        if bmp in _FIXED_BMP_BYTES:
            size, header = _FIXED_BMP_BYTES[bmp], 0
        elif bmp in _LLVAR_BMPS or bmp in _LLLVAR_BMPS:
            header = 2 if bmp in _LLVAR_BMPS else 3
            length = _ll_length(data, start, header)
            if length is None:
                break
            size = length
        elif bmp == Bmp.TLV_CONTAINER:
            parsed = _tlv_container_length(data, start)
            if parsed is None:
                break
            size, header = parsed
        else:
            break
        end = start + header + size
        if end > len(data):
            break
        out.fields[bmp] = data[start + header : end]
        pos = end
    out.unparsed = data[pos:]
    return out


def encode_bitmaps(fields: dict[int, bytes]) -> bytes:
    """Bitmap fields of fixed length, in order (the simulator's side)."""
    out = bytearray()
    for bmp, value in fields.items():
        if _FIXED_BMP_BYTES.get(bmp) != len(value):
            raise ValueError(f"BMP {bmp:02x} takes {_FIXED_BMP_BYTES.get(bmp)} bytes")
        out.append(bmp)
        out += value
    return bytes(out)


_F = tuple[str, Component, Severity, str]
ZVT_FAULTS: dict[int, _F] = {
    0xCC: ("printer.not_ready", Component.PRINTER, Severity.ERROR, "printer not ready"),
    0x64: (
        "card_reader.card_unreadable",
        Component.CARD_READER,
        Severity.WARNING,
        "card not readable",
    ),
    0x72: ("card_reader.chip_error", Component.CARD_READER, Severity.WARNING, "chip error"),
    0xE2: (
        "card_reader.defective",
        Component.CARD_READER,
        Severity.ERROR,
        "card reader does not answer / defective",
    ),
    0x89: (
        "tamper.pin_pad_defective",
        Component.TAMPER,
        Severity.CRITICAL,
        "PIN pad defective: stop using the terminal",
    ),
    0xED: (
        "tamper.pin_pad_defective",
        Component.TAMPER,
        Severity.CRITICAL,
        "PIN pad defective: stop using the terminal",
    ),
    0xA3: ("network.no_connection", Component.NETWORK, Severity.ERROR, "no connection to host"),
    0xA1: (
        "network.host_not_responding",
        Component.NETWORK,
        Severity.ERROR,
        "remote host not responding",
    ),
    0xB1: ("storage.memory_full", Component.STORAGE, Severity.WARNING, "memory full"),
    0xB2: ("storage.journal_full", Component.STORAGE, Severity.WARNING, "journal full"),
    0x74: ("keys.dukpt_exhausted", Component.KEYS, Severity.CRITICAL, "DUKPT exhausted"),
    0x85: ("keys.missing", Component.KEYS, Severity.CRITICAL, "key missing"),
}
"""ZVT result codes that describe a fault of the terminal, and the fault they become."""

BENIGN_CODES = frozenset({0x00, 0x9C, 0xDC})
"""Ready, "please wait", "card inserted": states, not faults."""


def fault_for(result_code: int) -> DetectedFault | None:
    """The fault a ZVT result code reports, or None for a benign one.

    Codes outside the table still become a fault (``system.zvt_xx``, info) so nobody
    misses a code this agent does not know yet.
    """
    if result_code in BENIGN_CODES:
        return None
    known = ZVT_FAULTS.get(result_code)
    if known is None:
        return DetectedFault(
            f"system.zvt_{result_code:02x}",
            Component.SYSTEM,
            Severity.INFO,
            f"terminal reports ZVT result code 0x{result_code:02X}",
            result_code,
        )
    code, component, severity, detail = known
    return DetectedFault(
        code, component, severity, f"{detail} (ZVT 0x{result_code:02X})", result_code
    )
