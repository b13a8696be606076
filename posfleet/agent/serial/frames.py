"""ZVT serial transport framing, sans-IO: bytes in, frames and link events out.

A frame on the wire is ``DLE STX <APDU, every DLE doubled> DLE ETX CRC-lo CRC-hi``; the
CRC is CRC-16/KERMIT over the unescaped APDU followed by ETX. Single ``ACK`` / ``NAK``
bytes travel between frames. :class:`FrameDecoder` never raises on input: whatever the
line delivers becomes events, and it resynchronises on the next ``DLE STX``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

DLE = 0x10
STX = 0x02
ETX = 0x03
ACK = 0x06
NAK = 0x15

MAX_APDU_BYTES = 3 + 2 + 0xFFFF
"""Largest APDU the length field can describe: header, 0xFF + two length bytes, data."""


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc16_kermit(data: bytes, crc: int = 0) -> int:
    """CRC-16/KERMIT (reflected polynomial 0x8408, initial value 0, no final xor)."""
    for byte in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ byte) & 0xFF]
    return crc


def frame_crc(apdu: bytes) -> int:
    """The CRC a frame carrying ``apdu`` ends with (computed over the APDU plus ETX)."""
    return crc16_kermit(bytes((ETX,)), crc16_kermit(apdu))


def encode_frame(apdu: bytes) -> bytes:
    """Frame ``apdu`` for the wire: DLE STX, escaped APDU, DLE ETX, CRC low byte first."""
    crc = frame_crc(apdu)
    escaped = apdu.replace(bytes((DLE,)), bytes((DLE, DLE)))
    return bytes((DLE, STX)) + escaped + bytes((DLE, ETX, crc & 0xFF, crc >> 8))


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A complete frame whose CRC matched; ``apdu`` is unescaped."""

    apdu: bytes


@dataclass(frozen=True, slots=True)
class AckReceived:
    """A single ACK byte outside a frame."""


@dataclass(frozen=True, slots=True)
class NakReceived:
    """A single NAK byte outside a frame."""


@dataclass(frozen=True, slots=True)
class BadCrc:
    """A complete frame whose CRC did not match: the receiver answers NAK."""

    apdu: bytes
    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class FrameAborted:
    """A frame that started but could not be completed (reason says why); it is dropped."""

    reason: str
    length: int


@dataclass(frozen=True, slots=True)
class GarbageSkipped:
    """Bytes outside any frame that were neither ACK, NAK nor a frame start."""

    count: int


DecoderEvent = FrameReceived | AckReceived | NakReceived | BadCrc | FrameAborted | GarbageSkipped
"""Everything :meth:`FrameDecoder.feed` can report."""


class _State(Enum):
    IDLE = auto()
    IDLE_DLE = auto()
    BODY = auto()
    BODY_DLE = auto()
    CRC_LO = auto()
    CRC_HI = auto()


class FrameDecoder:
    """Streaming decoder: feed it chunks of any size, get the events they complete."""

    def __init__(self, max_apdu_bytes: int = MAX_APDU_BYTES) -> None:
        self.max_apdu_bytes = max_apdu_bytes
        self._state = _State.IDLE
        self._body = bytearray()
        self._crc_lo = 0
        self._garbage = 0
        self._oversize = False

    def feed(self, chunk: bytes) -> list[DecoderEvent]:
        """Consume ``chunk`` and return the events it completes, in wire order."""
        events: list[DecoderEvent] = []
        for byte in chunk:
            self._step(byte, events)
        self._flush_garbage(events)
        return events

    @property
    def in_frame(self) -> bool:
        """True while a frame has started but not ended (a capture that stops mid-frame)."""
        return self._state not in (_State.IDLE, _State.IDLE_DLE)

    def reset(self) -> None:
        """Forget any partial frame (the bytes seen so far are not reported)."""
        self._state = _State.IDLE
        self._body.clear()
        self._garbage = 0
        self._oversize = False

    def _flush_garbage(self, events: list[DecoderEvent]) -> None:
        if self._garbage:
            events.append(GarbageSkipped(self._garbage))
            self._garbage = 0

    def _start_frame(self, events: list[DecoderEvent]) -> None:
        self._flush_garbage(events)
        self._body.clear()
        self._oversize = False
        self._state = _State.BODY

    def _append(self, byte: int) -> None:
        # Past the limit, keep scanning for the frame's end but stop storing: memory stays
        # bounded whatever a broken peer sends.
        if len(self._body) >= self.max_apdu_bytes:
            self._oversize = True
        else:
            self._body.append(byte)

    def _step(self, byte: int, events: list[DecoderEvent]) -> None:
        state = self._state
        if state is _State.IDLE:
            if byte == DLE:
                self._state = _State.IDLE_DLE
            elif byte == ACK:
                self._flush_garbage(events)
                events.append(AckReceived())
            elif byte == NAK:
                self._flush_garbage(events)
                events.append(NakReceived())
            else:
                self._garbage += 1
        elif state is _State.IDLE_DLE:
            if byte == STX:
                self._start_frame(events)
            else:
                self._garbage += 1  # the DLE that did not start a frame
                self._state = _State.IDLE
                self._step(byte, events)
        elif state is _State.BODY:
            if byte == DLE:
                self._state = _State.BODY_DLE
            else:
                self._append(byte)
        elif state is _State.BODY_DLE:
            if byte == DLE:
                self._append(DLE)
                self._state = _State.BODY
            elif byte == ETX:
                self._state = _State.CRC_LO
            elif byte == STX:
                # A new frame began before this one ended: the sender gave up on it.
                events.append(FrameAborted("new frame started before DLE ETX", len(self._body)))
                self._start_frame(events)
            else:
                events.append(FrameAborted(f"invalid escape DLE 0x{byte:02x}", len(self._body)))
                self._body.clear()
                self._state = _State.IDLE
                self._garbage += 1
        elif state is _State.CRC_LO:
            self._crc_lo = byte
            self._state = _State.CRC_HI
        else:
            self._finish(self._crc_lo | byte << 8, events)

    def _finish(self, received: int, events: list[DecoderEvent]) -> None:
        apdu = bytes(self._body)
        self._body.clear()
        self._state = _State.IDLE
        if self._oversize:
            events.append(FrameAborted(f"frame longer than {self.max_apdu_bytes} bytes", len(apdu)))
            return
        expected = frame_crc(apdu)
        if expected == received:
            events.append(FrameReceived(apdu))
        else:
            events.append(BadCrc(apdu, expected, received))
