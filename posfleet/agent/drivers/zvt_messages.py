"""Decode what a ZVT terminal (or its cash register) sends into one typed message, sans-IO.

:func:`decode_apdu` takes one APDU's bytes (class, instruction, length, data; unframed, as
over TCP or inside a serial frame) and returns a :class:`ZvtMessage` with the fields support
staff and the agent care about:

- Completion ``06 0F`` after a Status Enquiry: software version (LLLVAR ASCII), the
  terminal status byte, an optional TLV container (BMP ``06``); any other Completion: BMPs;
- Status Information ``04 0F``: BMPs ``04`` amount, ``0B`` trace, ``0C`` time, ``0D`` date,
  ``27`` result code, ``29`` terminal id, ``3B`` AID, ``87`` receipt, ``8A`` card type,
  ``8B`` card name, ``06`` TLV (and every other BMP of known length, kept raw);
- Intermediate Status ``04 FF``: the status byte, an optional timeout, optional TLV;
- Abort ``06 1E``: the result code; negative acknowledgement ``84 xx``: ``xx``.

Card data is never decoded into the message: BMPs ``22``/``23``/``24``/``2D`` (PAN and
tracks) stay in ``bmps`` as the terminal sent them (masked, on real terminals) and
:meth:`ZvtMessage.summary` leaves them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posfleet.agent.drivers.zvt_bitmaps import (
    Bmp,
    ZvtDecodeError,
    ZvtTlv,
    ber_length,
    decode_tlv_container,
    ll_length,
    split_bitmaps,
)
from posfleet.agent.drivers.zvt_result_codes import (
    ResultClass,
    ResultCode,
    result_code,
    terminal_status,
)
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import ApduError

MESSAGE_NAMES: dict[int, str] = {
    0x0600: "registration",
    0x0601: "authorization",
    0x0602: "log off",
    0x0650: "end of day",
    0x0670: "diagnosis",
    0x06B0: "abort request",
    0x0501: "status enquiry",
    0x040F: "status information",
    0x04FF: "intermediate status",
    0x060F: "completion",
    0x061E: "abort",
    0x06D1: "print line",
    0x06D3: "print text block",
    0x8000: "acknowledgement",
}
"""Names of the ZVT messages by class and instruction."""

INTERMEDIATE_STATUS_TEXT: dict[int, str] = {
    0x0A: "insert card",
    0x0B: "please remove card",
    0x0C: "card not readable",
    0x0E: "please wait",
    0x17: "please wait",
}
"""Intermediate status codes the decoder names; others are shown as their number."""

CARD_TYPE_NAMES: dict[int, str] = {
    0x05: "girocard",
    0x06: "Mastercard",
    0x0A: "Visa",
    0x2E: "Maestro",
}
"""ZVT card type ids (BMP ``8A``) the decoder names; others are shown as their number."""

_CARD_DATA_BMPS = frozenset({0x22, 0x23, 0x24, 0x2D, 0x2E})


@dataclass(frozen=True)
class ZvtMessage:
    """One decoded ZVT APDU. Absent fields are None."""

    cls: int
    ins: int
    data: bytes = b""
    software_version: str | None = None
    terminal_status: int | None = None
    result_code: int | None = None
    intermediate_status: int | None = None
    amount_cents: int | None = None
    trace: int | None = None
    receipt: int | None = None
    time: str | None = None
    """``HH:MM:SS`` from BMP ``0C``."""
    date: str | None = None
    """``MM-DD`` from BMP ``0D`` (ZVT sends no year)."""
    card_type: int | None = None
    card_name: str | None = None
    terminal_id: str | None = None
    aid: str | None = None
    tlv: tuple[ZvtTlv, ...] | None = None
    bmps: dict[int, bytes] = field(default_factory=dict)
    """Every BMP split off, by number (the last value of a repeated one)."""
    unparsed: bytes = b""
    """Data from the first BMP whose length class is unknown."""

    @property
    def control(self) -> int:
        """Class and instruction as one number (``0x060F``)."""
        return self.cls << 8 | self.ins

    @property
    def name(self) -> str:
        """What the message is (``completion``, ``status information`` ...)."""
        if self.cls == 0x84:
            return "negative acknowledgement"
        return MESSAGE_NAMES.get(self.control, f"zvt {self.cls:02X} {self.ins:02X}")

    @property
    def result(self) -> ResultCode | None:
        """The result code's table entry (meaning, class, fault), if there is one."""
        return None if self.result_code is None else result_code(self.result_code)

    @property
    def status(self) -> ResultCode | None:
        """The terminal status code's table entry, if there is one."""
        return None if self.terminal_status is None else terminal_status(self.terminal_status)

    @property
    def declined(self) -> bool:
        """True if the result code is a decline, a card error or a cancellation."""
        result = self.result
        return result is not None and result.result_class in (
            ResultClass.DECLINED,
            ResultClass.CARD_ERROR,
            ResultClass.CANCELLED,
        )

    def summary(self) -> dict[str, Any]:
        """The decoded fields as JSON-ready values (no card data), for traces and logs."""
        out: dict[str, Any] = {"zvt": self.name}
        if self.software_version is not None:
            out["software_version"] = self.software_version
        if self.status is not None:
            out["terminal_status"] = f"{self.status.code:02x}"
            out["terminal_status_meaning"] = self.status.meaning
            out["terminal_status_class"] = str(self.status.result_class)
        if self.result is not None:
            out["result_code"] = f"{self.result.code:02x}"
            out["result_meaning"] = self.result.meaning
            out["result_class"] = str(self.result.result_class)
        if self.intermediate_status is not None:
            code = self.intermediate_status
            out["intermediate_status"] = f"{code:02x}"
            out["intermediate_meaning"] = INTERMEDIATE_STATUS_TEXT.get(code, f"status {code:02x}")
        for key in ("amount_cents", "trace", "receipt", "time", "date", "terminal_id", "aid"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.card_type is not None:
            out["card_type"] = CARD_TYPE_NAMES.get(self.card_type, f"{self.card_type:02x}")
        if self.card_name is not None:
            out["card_name"] = self.card_name
        if self.tlv is not None:
            out["tlv_tags"] = [item.tag for item in self.tlv]
        other = sorted(b for b in self.bmps if b not in _INTERPRETED and b not in _CARD_DATA_BMPS)
        if other:
            out["other_bmps"] = [f"{b:02x}" for b in other]
        if self.unparsed:
            out["unparsed_bytes"] = len(self.unparsed)
        return out


_INTERPRETED = frozenset(int(b) for b in Bmp)


def decode_apdu(data: bytes) -> ZvtMessage:
    """Decode one ZVT APDU (header and data, no serial framing).

    Raises :class:`ZvtDecodeError` (a ``SerialLinkError``) if the length field disagrees
    with the bytes, a field is truncated, or a BCD number holds a non-decimal digit.
    """
    try:
        apdu = Apdu.decode(data)
    except ApduError as exc:
        raise ZvtDecodeError(str(exc), 0) from exc
    return decode_message(apdu)


def decode_message(apdu: Apdu) -> ZvtMessage:
    """Decode an APDU already split off (see :func:`decode_apdu`)."""
    control, data = apdu.cls << 8 | apdu.ins, apdu.data
    base: dict[str, Any] = {"cls": apdu.cls, "ins": apdu.ins, "data": data}
    if apdu.cls == 0x84:
        return ZvtMessage(**base, result_code=apdu.ins)
    if control == 0x060F and _starts_with_lllvar(data):
        return _status_completion(base, data)
    if control == 0x061E:
        if not data:
            return ZvtMessage(**base)
        fields = _bmp_fields(data, 1)
        fields["result_code"] = data[0]  # the Abort's own code, whatever a BMP 27 says
        return ZvtMessage(**base, **fields)
    if control == 0x04FF:
        return _intermediate(base, data)
    if control in (0x040F, 0x060F):
        return ZvtMessage(**base, **_bmp_fields(data, 0))
    return ZvtMessage(**base)


def _starts_with_lllvar(data: bytes) -> bool:
    return ll_length(data, 0, 3) is not None


def _status_completion(base: dict[str, Any], data: bytes) -> ZvtMessage:
    size = ll_length(data, 0, 3)
    assert size is not None
    end = 3 + size
    if end > len(data):
        raise ZvtDecodeError(f"software version needs {size} bytes but {len(data) - 3} remain", 3)
    version = data[3:end].decode("latin-1").rstrip("\x00 ")
    if end >= len(data):
        raise ZvtDecodeError("Completion ends before the terminal status byte", end)
    rest = _bmp_fields(data, end + 1)
    return ZvtMessage(**base, software_version=version, terminal_status=data[end], **rest)


def _intermediate(base: dict[str, Any], data: bytes) -> ZvtMessage:
    if not data:
        raise ZvtDecodeError("Intermediate Status without its status byte", 0)
    rest = data[1:]
    # An optional timeout byte comes before the optional TLV container.
    if rest and not _is_whole_tlv_container(rest):
        rest = rest[1:]
    fields = _bmp_fields(rest, 0, offset=len(data) - len(rest))
    return ZvtMessage(**base, intermediate_status=data[0], **fields)


def _is_whole_tlv_container(data: bytes) -> bool:
    if data[0] != Bmp.TLV_CONTAINER:
        return False
    parsed = ber_length(data, 1)
    return parsed is not None and 1 + parsed[1] + parsed[0] == len(data)


def _bmp_fields(data: bytes, start: int, *, offset: int = 0) -> dict[str, Any]:
    where = offset + start
    try:
        split = split_bitmaps(data[start:], strict=True)
    except ZvtDecodeError as exc:
        raise ZvtDecodeError(exc.reason, where + exc.offset) from None
    f = split.fields
    out: dict[str, Any] = {"bmps": f, "unparsed": split.unparsed}
    if Bmp.RESULT_CODE in f:
        out["result_code"] = f[Bmp.RESULT_CODE][0]
    if Bmp.AMOUNT in f:
        out["amount_cents"] = _bcd_int(f[Bmp.AMOUNT], "amount", where)
    if Bmp.TRACE in f:
        out["trace"] = _bcd_int(f[Bmp.TRACE], "trace number", where)
    if Bmp.RECEIPT in f:
        out["receipt"] = _bcd_int(f[Bmp.RECEIPT], "receipt number", where)
    if Bmp.TIME in f:
        hms = _bcd_digits(f[Bmp.TIME], "time", where)
        out["time"] = f"{hms[0:2]}:{hms[2:4]}:{hms[4:6]}"
    if Bmp.DATE in f:
        md = _bcd_digits(f[Bmp.DATE], "date", where)
        out["date"] = f"{md[0:2]}-{md[2:4]}"
    if Bmp.TERMINAL_ID in f:
        out["terminal_id"] = f[Bmp.TERMINAL_ID].hex()
    if Bmp.AID in f:
        out["aid"] = _text(f[Bmp.AID])
    if Bmp.CARD_TYPE in f:
        out["card_type"] = f[Bmp.CARD_TYPE][0]
    if Bmp.CARD_NAME in f:
        out["card_name"] = _text(f[Bmp.CARD_NAME])
    if Bmp.TLV_CONTAINER in f:
        out["tlv"] = tuple(decode_tlv_container(f[Bmp.TLV_CONTAINER], offset=where))
    return out


def _bcd_digits(value: bytes, what: str, offset: int) -> str:
    digits = value.hex()
    if not digits.isdigit():
        raise ZvtDecodeError(f"{what} {digits} is not BCD", offset)
    return digits


def _bcd_int(value: bytes, what: str, offset: int) -> int:
    return int(_bcd_digits(value, what, offset))


def _text(value: bytes) -> str:
    return value.decode("latin-1").rstrip("\x00 ")
