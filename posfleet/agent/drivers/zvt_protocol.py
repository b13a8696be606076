"""The slice of ZVT the agent uses on unmodified ECR terminals, sans-IO.

Commands (ECR to terminal): Status Enquiry ``05 01`` and Diagnosis ``06 70``. The terminal
acknowledges with ``80 00 00`` (or refuses with ``84 xx``), then, holding the master rights,
sends Status-Information ``04 0F``, Intermediate Status ``04 FF`` and Print Line ``06 D1``
messages (each answered ``80 00 00`` by the ECR) and ends with Completion ``06 0F`` or
Abort ``06 1E <result code>``. Status messages carry bitmap fields (BMPs): ``27`` the
result code, ``29`` the terminal id (4 bytes BCD), ``06`` a TLV container.

This module builds the ECR's commands; :mod:`zvt_messages` decodes what the terminal
sends (:func:`decode_apdu`), :mod:`zvt_bitmaps` splits BMP fields and
:mod:`zvt_result_codes` holds the one table of result codes. Their public names are
re-exported here for older callers.
"""

from __future__ import annotations

from enum import IntEnum

from posfleet.agent.drivers.zvt_bitmaps import (
    _FIXED_BMP_BYTES,
    Bitmaps,
    Bmp,
    ZvtDecodeError,
    encode_bitmaps,
    parse_bitmaps,
)
from posfleet.agent.drivers.zvt_messages import ZvtMessage, decode_apdu, decode_message
from posfleet.agent.drivers.zvt_result_codes import RESULT_CODES, ResultClass, fault_for
from posfleet.agent.serial.apdu import Apdu

__all__ = [
    "DEFAULT_PASSWORD",
    "RESULT_CODES",
    "_FIXED_BMP_BYTES",
    "Bitmaps",
    "Bmp",
    "Control",
    "ResultClass",
    "ZvtDecodeError",
    "ZvtMessage",
    "control",
    "decode_apdu",
    "decode_message",
    "diagnosis",
    "encode_bitmaps",
    "fault_for",
    "parse_bitmaps",
    "status_enquiry",
]

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
    REGISTRATION = 0x0600
    AUTHORIZATION = 0x0601
    LOG_OFF = 0x0602
    END_OF_DAY = 0x0650
    ABORT_REQUEST = 0x06B0


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
