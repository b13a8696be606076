"""ZVT APDUs: class, instruction, length, data.

The length is one byte for up to 254 data bytes; longer data (and exactly 255 bytes, since
0xFF is the marker) uses ``0xFF`` followed by a two-byte little-endian length.
"""

from __future__ import annotations

from dataclasses import dataclass

from posfleet.agent.serial.errors import ApduError

LONG_LENGTH_MARKER = 0xFF
MAX_DATA_BYTES = 0xFFFF

SUCCESS_CLASS = 0x80
"""Class of a positive completion (``80 00 ..``)."""
FAILURE_CLASS = 0x84
"""Class of a negative completion; the instruction byte carries the result code."""


@dataclass(frozen=True, slots=True)
class Apdu:
    """One application protocol data unit."""

    cls: int
    ins: int
    data: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.cls <= 0xFF or not 0 <= self.ins <= 0xFF:
            raise ApduError(f"class and instruction must be bytes, got {self.cls}, {self.ins}")
        if len(self.data) > MAX_DATA_BYTES:
            raise ApduError(f"APDU data of {len(self.data)} bytes exceeds {MAX_DATA_BYTES}")

    def encode(self) -> bytes:
        """The APDU's bytes, using the short length form whenever it fits."""
        size = len(self.data)
        if size < LONG_LENGTH_MARKER:
            header = bytes((self.cls, self.ins, size))
        else:
            header = bytes((self.cls, self.ins, LONG_LENGTH_MARKER, size & 0xFF, size >> 8))
        return header + self.data

    @classmethod
    def decode(cls, raw: bytes) -> Apdu:
        """Parse one APDU; the length field must match the bytes exactly."""
        if len(raw) < 3:
            raise ApduError(f"APDU of {len(raw)} bytes is shorter than its 3-byte header")
        size, start = raw[2], 3
        if size == LONG_LENGTH_MARKER:
            if len(raw) < 5:
                raise ApduError("APDU announces a two-byte length but ends before it")
            size, start = raw[3] | raw[4] << 8, 5
        if len(raw) - start != size:
            raise ApduError(
                f"APDU length field says {size} data bytes but {len(raw) - start} follow"
            )
        return cls(raw[0], raw[1], raw[start:])

    @property
    def is_success(self) -> bool:
        """True for a positive completion ``80 00``."""
        return self.cls == SUCCESS_CLASS and self.ins == 0x00

    @property
    def is_failure(self) -> bool:
        """True for a negative completion ``84 xx``."""
        return self.cls == FAILURE_CLASS

    @property
    def result_code(self) -> int | None:
        """The result code of a negative completion, else None."""
        return self.ins if self.is_failure else None

    def __str__(self) -> str:
        return f"APDU {self.cls:02X} {self.ins:02X} ({len(self.data)} data bytes)"


def success(data: bytes = b"") -> Apdu:
    """A positive completion carrying ``data``."""
    return Apdu(SUCCESS_CLASS, 0x00, data)


def failure(result_code: int, data: bytes = b"") -> Apdu:
    """A negative completion with ``result_code``."""
    return Apdu(FAILURE_CLASS, result_code, data)


MAX_APDU_BYTES = 5 + MAX_DATA_BYTES


class ApduStream:
    """Sans-IO splitter of an unframed APDU byte stream (ZVT over TCP) into APDUs.

    ``feed(bytes)`` returns the complete APDUs' bytes, in order; a partial APDU waits for
    the rest. There is no resynchronisation on a byte stream: the length field is the only
    boundary, so the stream is trusted as TCP delivers it.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes held of an APDU not yet complete."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return every APDU it completes."""
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= 3:
            size, start = self._buffer[2], 3
            if size == LONG_LENGTH_MARKER:
                if len(self._buffer) < 5:
                    break
                size, start = self._buffer[3] | self._buffer[4] << 8, 5
            end = start + size
            if len(self._buffer) < end:
                break
            out.append(bytes(self._buffer[:end]))
            del self._buffer[:end]
        return out
