"""ZVT bitmap fields (BMPs) and the TLV container, sans-IO.

A BMP is one byte naming the field, then its value, whose length comes from the field's
length class: fixed (amount ``04``: 6 bytes BCD), LLVAR (two bytes ``F0``-``F9`` whose low
nibbles are the decimal length, e.g. ``F1 F7`` = 17 bytes), LLLVAR (three such bytes) or,
for BMP ``06``, a BER length (``00``-``7F``, ``81 nn``, ``82 nn nn``). Knowing the class is
enough to skip a field this agent does not interpret; a BMP whose class is unknown cannot
be skipped, so splitting stops there and the rest is left unparsed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from posfleet.agent.drivers.errors import MalformedReplyError


class ZvtDecodeError(MalformedReplyError):
    """ZVT data that ends inside a field or holds a malformed length or BCD number."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at data offset {offset})")
        self.reason = message
        self.offset = offset


class Bmp(IntEnum):
    """Bitmap field numbers the decoder interprets."""

    AMOUNT = 0x04
    TLV_CONTAINER = 0x06
    TRACE = 0x0B
    TIME = 0x0C
    DATE = 0x0D
    STATUS_BYTE = 0x19
    RESULT_CODE = 0x27
    TERMINAL_ID = 0x29
    AID = 0x3B
    ADDITIONAL_TEXT = 0x3C
    CURRENCY_CODE = 0x49
    RECEIPT = 0x87
    CARD_TYPE = 0x8A
    CARD_NAME = 0x8B


_FIXED_BMP_BYTES = {
    0x01: 1, 0x02: 1, 0x03: 1, 0x04: 6, 0x05: 1, 0x0B: 3, 0x0C: 3, 0x0D: 2, 0x0E: 2,
    0x17: 2, 0x19: 1, 0x27: 1, 0x29: 4, 0x2A: 15, 0x37: 3, 0x3A: 2, 0x3B: 8, 0x3D: 3,
    0x49: 2, 0x87: 2, 0x88: 3, 0x8A: 1, 0x8C: 1, 0xA0: 1, 0xAA: 3, 0xBA: 5, 0xD0: 1,
    0xD2: 1, 0xD3: 1, 0xE0: 1, 0xE9: 1, 0xEA: 1, 0xEB: 8, 0xF0: 1,
}  # fmt: skip
"""Fixed-length BMPs and their sizes in bytes."""
_LLVAR_BMPS = frozenset(
    {0x22, 0x23, 0x2D, 0x8B, 0x92, 0xA7, 0xD1, *range(0xE1, 0xE9), *range(0xF1, 0xF9)}
)
_LLLVAR_BMPS = frozenset({0x24, 0x2E, 0x3C, 0x60, 0x9A, 0xAF})


@dataclass
class Bitmaps:
    """The BMP fields of a message; ``unparsed`` holds what could not be split off.

    ``fields`` keeps the last value of a BMP that repeats; ``items`` keeps all, in order.
    """

    fields: dict[int, bytes] = field(default_factory=dict)
    unparsed: bytes = b""
    items: list[tuple[int, bytes]] = field(default_factory=list)

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


def ll_length(data: bytes, pos: int, digits: int) -> int | None:
    """The length of an LLVAR (``digits`` 2) or LLLVAR (3) field at ``pos``, or None."""
    raw = data[pos : pos + digits]
    if len(raw) < digits or any(b & 0xF0 != 0xF0 or b & 0x0F > 9 for b in raw):
        return None
    return int("".join(str(b & 0x0F) for b in raw))


def ber_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """A BER definite length at ``pos``: (value, bytes it took), or None if malformed."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, 1
    width = first & 0x7F
    if width not in (1, 2) or pos + 1 + width > len(data):
        return None
    return int.from_bytes(data[pos + 1 : pos + 1 + width], "big"), 1 + width


def _field_at(data: bytes, pos: int) -> tuple[int, int] | str | None:
    """(value start, value end) of the BMP at ``pos``; a reason if malformed; None if unknown."""
    bmp, start = data[pos], pos + 1
    if bmp in _FIXED_BMP_BYTES:
        header, size = 0, _FIXED_BMP_BYTES[bmp]
    elif bmp in _LLVAR_BMPS or bmp in _LLLVAR_BMPS:
        header = 2 if bmp in _LLVAR_BMPS else 3
        length = ll_length(data, start, header)
        if length is None:
            kind = "LLVAR" if header == 2 else "LLLVAR"
            return f"BMP {bmp:02X}: no valid {kind} length"
        size = length
    elif bmp == Bmp.TLV_CONTAINER:
        parsed = ber_length(data, start)
        if parsed is None:
            return "BMP 06: no valid TLV container length"
        size, header = parsed
    else:
        return None
    end = start + header + size
    if end > len(data):
        return f"BMP {bmp:02X} needs {size} bytes but {len(data) - start - header} remain"
    return start + header, end


def split_bitmaps(data: bytes, *, strict: bool) -> Bitmaps:
    """Split ``data`` into BMP fields.

    An unknown BMP ends the split (the rest is ``unparsed``). A field that is truncated or
    has a malformed length raises :class:`ZvtDecodeError` when ``strict``, else it also
    ends the split.
    """
    out = Bitmaps()
    pos = 0
    while pos < len(data):
        found = _field_at(data, pos)
        if found is None:
            break
        if isinstance(found, str):
            if strict:
                raise ZvtDecodeError(found, pos)
            break
        start, end = found
        out.fields[data[pos]] = data[start:end]
        out.items.append((data[pos], data[start:end]))
        pos = end
    out.unparsed = data[pos:]
    return out


def parse_bitmaps(data: bytes) -> Bitmaps:
    """Split a status message's data into its BMP fields (never raises)."""
    return split_bitmaps(data, strict=False)


def encode_bitmaps(fields: dict[int, bytes]) -> bytes:
    """Bitmap fields of fixed length, in order (the simulator's side)."""
    out = bytearray()
    for bmp, value in fields.items():
        if _FIXED_BMP_BYTES.get(bmp) != len(value):
            raise ValueError(f"BMP {bmp:02x} takes {_FIXED_BMP_BYTES.get(bmp)} bytes")
        out.append(bmp)
        out += value
    return bytes(out)


def llvar(value: bytes, digits: int = 2) -> bytes:
    """``value`` with its LLVAR (``digits`` 2) or LLLVAR (3) length in front."""
    if len(value) >= 10**digits:
        raise ValueError(f"{len(value)} bytes do not fit a {digits}-digit length")
    return bytes(0xF0 | int(d) for d in str(len(value)).rjust(digits, "0")) + value


def tlv_container(content: bytes) -> bytes:
    """BMP ``06`` with a BER length and ``content``."""
    size = len(content)
    if size < 0x80:
        return bytes((0x06, size)) + content
    if size <= 0xFF:
        return bytes((0x06, 0x81, size)) + content
    return bytes((0x06, 0x82, size >> 8, size & 0xFF)) + content


@dataclass(frozen=True, slots=True)
class ZvtTlv:
    """One item of a TLV container: a BER tag (``1F10``, ``24``) and its value.

    A constructed tag (bit 6 of its first byte set) has its items in ``children``.
    """

    tag: str
    value: bytes
    children: tuple[ZvtTlv, ...] = ()


def decode_tlv_container(data: bytes, *, offset: int = 0, depth: int = 0) -> list[ZvtTlv]:
    """The items of a TLV container's content (BER tags and lengths).

    Raises :class:`ZvtDecodeError` if an item is truncated or its length malformed.
    """
    if depth > 8:
        raise ZvtDecodeError("TLV container nested too deep", offset)
    items: list[ZvtTlv] = []
    pos = 0
    while pos < len(data):
        if data[pos] == 0x00:  # padding between items, as BER allows
            pos += 1
            continue
        tag_start = pos
        constructed = bool(data[pos] & 0x20)
        if data[pos] & 0x1F == 0x1F:
            pos += 1
            while pos < len(data) and data[pos] & 0x80:
                pos += 1
        pos += 1
        if pos > len(data) or pos - tag_start > 4:
            raise ZvtDecodeError("TLV tag truncated or too long", offset + tag_start)
        parsed = ber_length(data, pos)
        if parsed is None:
            raise ZvtDecodeError("TLV item has no valid length", offset + pos)
        size, header = parsed
        start = pos + header
        if start + size > len(data):
            raise ZvtDecodeError(
                f"TLV item needs {size} bytes but {len(data) - start} remain", offset + pos
            )
        value = data[start : start + size]
        children = (
            tuple(decode_tlv_container(value, offset=offset + start, depth=depth + 1))
            if constructed
            else ()
        )
        items.append(ZvtTlv(data[tag_start:pos].hex(), value, children))
        pos = start + size
    return items
