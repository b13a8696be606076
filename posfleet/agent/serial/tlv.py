"""A small BER-like tag-length-value codec for the maintenance command set's APDU data.

- tag: one byte, 0x01 to 0xFE (0x00 and 0xFF are reserved);
- length: one byte 0x00-0x7F, or 0x81 + one byte, or 0x82 + two bytes big-endian
  (the BER definite forms; at most 65535);
- value: ``length`` bytes. A tag may repeat; order is kept.

Value types: unsigned and signed integers are big-endian (signed: two's complement) in
1 to 8 bytes, and senders use the shortest form; flags are one byte 0x00 / 0x01; text is
UTF-8; a nested value is itself a TLV sequence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from posfleet.agent.serial.errors import TlvError

MAX_VALUE_BYTES = 0xFFFF
MAX_INT_BYTES = 8


@dataclass(frozen=True, slots=True)
class Tlv:
    """One tag-length-value item."""

    tag: int
    value: bytes

    def __post_init__(self) -> None:
        if not 0x01 <= self.tag <= 0xFE:
            raise TlvError(f"TLV tag 0x{self.tag:02x} is reserved or not a byte")
        if len(self.value) > MAX_VALUE_BYTES:
            raise TlvError(f"TLV value of {len(self.value)} bytes exceeds {MAX_VALUE_BYTES}")

    def encode(self) -> bytes:
        """The item's bytes."""
        size = len(self.value)
        if size < 0x80:
            length = bytes((size,))
        elif size <= 0xFF:
            length = bytes((0x81, size))
        else:
            length = bytes((0x82, size >> 8, size & 0xFF))
        return bytes((self.tag,)) + length + self.value


def encode_tlv(items: Iterable[Tlv]) -> bytes:
    """Concatenate the encodings of ``items``."""
    return b"".join(item.encode() for item in items)


def decode_tlv(data: bytes) -> list[Tlv]:
    """Split ``data`` into TLV items; anything malformed raises :class:`TlvError`."""
    items: list[Tlv] = []
    pos = 0
    while pos < len(data):
        tag = data[pos]
        if tag in (0x00, 0xFF):
            raise TlvError(f"reserved TLV tag 0x{tag:02x} at offset {pos}")
        if pos + 1 >= len(data):
            raise TlvError(f"TLV tag 0x{tag:02x} at offset {pos} has no length")
        first = data[pos + 1]
        if first < 0x80:
            size, pos = first, pos + 2
        elif first in (0x81, 0x82):
            width = first - 0x80
            if pos + 2 + width > len(data):
                raise TlvError(f"TLV tag 0x{tag:02x} at offset {pos}: length field truncated")
            size = int.from_bytes(data[pos + 2 : pos + 2 + width], "big")
            pos += 2 + width
        else:
            raise TlvError(f"TLV tag 0x{tag:02x}: unsupported length form 0x{first:02x}")
        if pos + size > len(data):
            raise TlvError(
                f"TLV tag 0x{tag:02x} announces {size} bytes but {len(data) - pos} remain"
            )
        items.append(Tlv(tag, data[pos : pos + size]))
        pos += size
    return items


def uint_tlv(tag: int, value: int) -> Tlv:
    """An unsigned integer in the fewest bytes (at least one)."""
    if not 0 <= value < 1 << (8 * MAX_INT_BYTES):
        raise TlvError(f"TLV tag 0x{tag:02x}: {value} does not fit an unsigned 64-bit value")
    return Tlv(tag, value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


def sint_tlv(tag: int, value: int) -> Tlv:
    """A signed integer, two's complement, in the fewest bytes (at least one)."""
    magnitude = value if value >= 0 else ~value
    width = (magnitude.bit_length() + 8) // 8  # room for the sign bit
    if width > MAX_INT_BYTES:
        raise TlvError(f"TLV tag 0x{tag:02x}: {value} does not fit a signed 64-bit value")
    return Tlv(tag, value.to_bytes(width, "big", signed=True))


def flag_tlv(tag: int, value: bool) -> Tlv:
    """A boolean as one byte."""
    return Tlv(tag, b"\x01" if value else b"\x00")


def text_tlv(tag: int, value: str) -> Tlv:
    """UTF-8 text."""
    return Tlv(tag, value.encode())


def nested_tlv(tag: int, items: Iterable[Tlv]) -> Tlv:
    """A value that is itself a TLV sequence."""
    return Tlv(tag, encode_tlv(items))


class TlvRecord:
    """Typed read access to a decoded TLV sequence; absent tags read as None."""

    def __init__(self, items: Iterable[Tlv]) -> None:
        self.items = list(items)

    @classmethod
    def parse(cls, data: bytes) -> TlvRecord:
        """Decode ``data`` (raises :class:`TlvError` if malformed)."""
        return cls(decode_tlv(data))

    def __iter__(self) -> Iterator[Tlv]:
        return iter(self.items)

    def raw(self, tag: int) -> bytes | None:
        """The first value under ``tag``."""
        return next((item.value for item in self.items if item.tag == tag), None)

    def all(self, tag: int) -> list[bytes]:
        """Every value under ``tag``, in order."""
        return [item.value for item in self.items if item.tag == tag]

    def uint(self, tag: int) -> int | None:
        """The first value under ``tag`` as an unsigned integer."""
        value = self.raw(tag)
        return None if value is None else _int(tag, value, signed=False)

    def sint(self, tag: int) -> int | None:
        """The first value under ``tag`` as a signed integer."""
        value = self.raw(tag)
        return None if value is None else _int(tag, value, signed=True)

    def flag(self, tag: int) -> bool | None:
        """The first value under ``tag`` as a boolean."""
        value = self.raw(tag)
        if value is None:
            return None
        if value not in (b"\x00", b"\x01"):
            raise TlvError(f"TLV tag 0x{tag:02x}: flag must be 00 or 01, got {value.hex()}")
        return value == b"\x01"

    def text(self, tag: int) -> str | None:
        """The first value under ``tag`` as UTF-8 text."""
        value = self.raw(tag)
        return None if value is None else _text(tag, value)

    def texts(self, tag: int) -> list[str]:
        """Every value under ``tag`` as UTF-8 text."""
        return [_text(tag, value) for value in self.all(tag)]

    def nested(self, tag: int) -> list[TlvRecord]:
        """Every value under ``tag`` decoded as a TLV sequence of its own."""
        return [TlvRecord.parse(value) for value in self.all(tag)]


def _int(tag: int, value: bytes, *, signed: bool) -> int:
    if not 1 <= len(value) <= MAX_INT_BYTES:
        raise TlvError(f"TLV tag 0x{tag:02x}: integer of {len(value)} bytes (1 to 8 allowed)")
    return int.from_bytes(value, "big", signed=signed)


def _text(tag: int, value: bytes) -> str:
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise TlvError(f"TLV tag 0x{tag:02x}: text is not UTF-8") from exc
