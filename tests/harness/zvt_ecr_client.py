"""A cash register (ECR) for tests, written from the ZVT specification, not from our driver.

It shares no code with ``posfleet.agent``: its own CRC, framing and APDU reading, so a
mistake in the agent's codec cannot hide behind the same mistake here. Blocking I/O with
deadlines (run it with ``asyncio.to_thread`` next to an asyncio simulator).

- Serial (a pty or a tty path): frames ``DLE STX <APDU, DLE doubled> DLE ETX CRClo CRChi``,
  CRC-16/CCITT reflected (poly 0x8408, init 0) over the APDU and ETX; every frame is
  answered with the byte ``ACK 06`` (or ``NAK 15``, and the sender repeats it, 3 sends at
  most); T3 = 5 s for the ACK.
- TCP: the APDUs travel as they are; the only acknowledgement is the APDU ``80 00 00``.

Every byte in both directions is recorded in :attr:`EcrClient.wire` with its time.
"""

from __future__ import annotations

import os
import select
import socket
import termios
import time
import tty
from dataclasses import dataclass, field
from typing import Literal, Protocol

DLE, STX, ETX, ACK, NAK = 0x10, 0x02, 0x03, 0x06, 0x15
T3_S = 5.0
MAX_SENDS = 3
ACK_APDU = bytes((0x80, 0x00, 0x00))


class EcrError(Exception):
    """The terminal did not answer as the specification says (timeout, bad reply)."""


def crc_kermit(data: bytes) -> int:
    """CRC over ``data`` bit by bit, as the specification's appendix describes it."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc


def frame(apdu: bytes) -> bytes:
    """The serial frame carrying ``apdu``."""
    body = bytearray()
    for byte in apdu:
        body.append(byte)
        if byte == DLE:
            body.append(DLE)
    crc = crc_kermit(apdu + bytes((ETX,)))
    return bytes((DLE, STX)) + bytes(body) + bytes((DLE, ETX, crc & 0xFF, crc >> 8))


class Transport(Protocol):
    """Bytes to and from the terminal (or whatever sits in front of it)."""

    def write(self, data: bytes) -> None:
        """Send all of ``data``."""

    def read(self, timeout: float) -> bytes:
        """Bytes that arrive within ``timeout`` seconds (empty if none)."""

    def close(self) -> None:
        """Release the line."""


class TtyTransport:
    """A tty or pty path (the slave of the simulator's pty), raw mode, or an open fd."""

    def __init__(self, path_or_fd: str | int) -> None:
        if isinstance(path_or_fd, int):
            self.fd = path_or_fd
        else:
            self.fd = os.open(path_or_fd, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.fd)
            termios.tcflush(self.fd, termios.TCIOFLUSH)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            _, ready, _ = select.select([], [self.fd], [], T3_S)
            if not ready:
                raise EcrError("the line does not take our bytes")
            view = view[os.write(self.fd, view) :]

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            return os.read(self.fd, 4096)
        except OSError:
            return b""

    def close(self) -> None:
        os.close(self.fd)


class TcpTransport:
    """A TCP connection to the terminal's ZVT port (20007 by default)."""

    def __init__(self, host: str, port: int, timeout: float = T3_S) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, timeout: float) -> bytes:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return b""
        try:
            data = self.sock.recv(4096)
        except OSError:
            return b""
        if not data:
            raise EcrError("the terminal closed the connection")
        return data

    def close(self) -> None:
        self.sock.close()


@dataclass
class WireRecord:
    """Bytes on the line: ``out`` from the ECR, ``in`` to it."""

    direction: Literal["out", "in"]
    t: float
    data: bytes


@dataclass
class Exchange:
    """One command and everything the terminal sent for it."""

    command: bytes
    reply: bytes = b""
    messages: list[bytes] = field(default_factory=list)
    result_code: int | None = None
    amount_cents: int | None = None
    printed: list[str] = field(default_factory=list)
    round_trips_s: list[float] = field(default_factory=list)
    """From the last byte of each of our APDUs to the whole of the terminal's answer."""
    started: float = 0.0
    accepted: float = 0.0
    """When the terminal's acknowledgement of the command arrived."""
    ended: float = 0.0

    @property
    def completed(self) -> bool:
        """Ended with Completion ``06 0F`` (as opposed to Abort ``06 1E`` or a refusal)."""
        return bool(self.messages) and self.messages[-1][:2] == b"\x06\x0f"


def _bcd(number: int, size: int) -> bytes:
    return bytes.fromhex(f"{number:0{size * 2}d}")


def _apdu(cls: int, ins: int, data: bytes = b"") -> bytes:
    if len(data) < 0xFF:
        return bytes((cls, ins, len(data))) + data
    return bytes((cls, ins, 0xFF, len(data) & 0xFF, len(data) >> 8)) + data


def _status_fields(data: bytes) -> tuple[int | None, int | None]:
    """Result code (BMP 27) and amount (BMP 04) of a Status Information, in spec order."""
    sizes = {0x04: 6, 0x0B: 3, 0x0C: 3, 0x0D: 2, 0x27: 1, 0x29: 4, 0x3B: 8, 0x87: 2, 0x8A: 1}
    code = amount = None
    pos = 0
    while pos < len(data):
        bmp = data[pos]
        if bmp in sizes:
            value = data[pos + 1 : pos + 1 + sizes[bmp]]
            pos += 1 + sizes[bmp]
        elif bmp in (0x8B, 0x22):  # LLVAR
            length = (data[pos + 1] & 0x0F) * 10 + (data[pos + 2] & 0x0F)
            pos += 3 + length
            continue
        else:
            break
        if bmp == 0x27:
            code = value[0]
        elif bmp == 0x04:
            amount = int(value.hex())
    return code, amount


class EcrClient:
    """Drives a terminal the way a cash register does; ``mode`` is the transport's kind."""

    def __init__(
        self,
        transport: Transport,
        mode: Literal["serial", "tcp"] = "serial",
        *,
        t3_s: float = T3_S,
        completion_timeout_s: float = 10.0,
    ) -> None:
        self.transport = transport
        self.mode = mode
        self.t3_s = t3_s
        self.completion_timeout_s = completion_timeout_s
        self.wire: list[WireRecord] = []
        self.naks_sent = 0
        self._buffer = bytearray()

    # --- bytes ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        self.wire.append(WireRecord("out", time.monotonic(), data))
        self.transport.write(data)

    def _fill(self, deadline: float) -> bool:
        data = self.transport.read(deadline - time.monotonic())
        if data:
            self.wire.append(WireRecord("in", time.monotonic(), data))
            self._buffer += data
        return bool(data)

    def _take(self, count: int, deadline: float) -> bytes:
        while len(self._buffer) < count:
            if time.monotonic() >= deadline:
                raise EcrError(f"timed out waiting for {count} bytes")
            self._fill(deadline)
        out = bytes(self._buffer[:count])
        del self._buffer[:count]
        return out

    def bytes_sent(self) -> bytes:
        """Every byte we put on the line, in order."""
        return b"".join(r.data for r in self.wire if r.direction == "out")

    def bytes_received(self) -> bytes:
        """Every byte that came back, in order."""
        return b"".join(r.data for r in self.wire if r.direction == "in")

    # --- one APDU each way --------------------------------------------------------------

    def send_apdu(self, apdu: bytes) -> float:
        """Send ``apdu`` (and wait for its ACK on serial); returns when it was sent."""
        if self.mode == "tcp":
            self._write(apdu)
            return time.monotonic()
        raw = frame(apdu)
        for _ in range(MAX_SENDS):
            self._write(raw)
            sent = time.monotonic()
            deadline = sent + self.t3_s
            try:
                while True:
                    byte = self._take(1, deadline)[0]
                    if byte == ACK:
                        return sent
                    if byte == NAK:
                        break
            except EcrError:
                continue
        raise EcrError(f"no ACK for {apdu[:2].hex()} after {MAX_SENDS} sends")

    def receive_apdu(self, timeout: float) -> bytes:
        """The terminal's next APDU (ACKed on serial)."""
        deadline = time.monotonic() + timeout
        if self.mode == "tcp":
            head = self._take(3, deadline)
            size = head[2]
            if size == 0xFF:
                extra = self._take(2, deadline)
                head += extra
                size = extra[0] | extra[1] << 8
            return head + self._take(size, deadline)
        while True:
            while self._take(1, deadline)[0] != DLE or self._take(1, deadline)[0] != STX:
                pass
            body = bytearray()
            while True:
                byte = self._take(1, deadline)[0]
                if byte == DLE:
                    nxt = self._take(1, deadline)[0]
                    if nxt == ETX:
                        break
                    byte = nxt  # a doubled DLE
                body.append(byte)
            crc = self._take(2, deadline)
            if crc_kermit(bytes(body) + bytes((ETX,))) == crc[0] | crc[1] << 8:
                self._write(bytes((ACK,)))
                return bytes(body)
            self.naks_sent += 1
            self._write(bytes((NAK,)))

    # --- commands -----------------------------------------------------------------------

    def run(
        self, command: bytes, *, answer_delay_s: float = 0.0, stop_at_intermediate: bool = False
    ) -> Exchange:
        """Send ``command`` and follow the terminal until it completes or aborts.

        ``answer_delay_s`` holds our answer to each Intermediate Status (a cashier who
        looks away while the customer finds the card): the line is idle mid-payment.
        ``stop_at_intermediate`` returns after answering the first one (to send Abort).
        """
        ex = Exchange(command=command, started=time.monotonic())
        sent = self.send_apdu(command)
        ex.reply = self.receive_apdu(self.t3_s)
        ex.accepted = time.monotonic()
        ex.round_trips_s.append(ex.accepted - sent)
        if ex.reply[:2] != b"\x80\x00":
            ex.result_code = ex.reply[1] if ex.reply[:1] == b"\x84" else None
            ex.ended = time.monotonic()
            return ex
        while True:
            message = self.receive_apdu(self.completion_timeout_s)
            ex.messages.append(message)
            kind, data = message[:2], message[3:]
            if kind == b"\x04\x0f":
                code, amount = _status_fields(data)
                ex.result_code = code if code is not None else ex.result_code
                ex.amount_cents = amount if amount is not None else ex.amount_cents
            elif kind == b"\x06\x1e":
                ex.result_code = data[0] if data else 0xFF
            elif kind == b"\x06\xd1":
                ex.printed.append(data[1:].decode("latin-1"))
            elif kind == b"\x04\xff" and answer_delay_s:
                time.sleep(answer_delay_s)  # the test's idle gap, not a synchronisation
            self.send_apdu(ACK_APDU)
            if kind in (b"\x06\x0f", b"\x06\x1e"):
                ex.ended = time.monotonic()
                if ex.result_code is None and kind == b"\x06\x0f":
                    ex.result_code = 0x00
                return ex
            if kind == b"\x04\xff" and stop_at_intermediate:
                return ex

    def register(self, password: str = "000000", config_byte: int = 0x8A) -> Exchange:
        """Registration ``06 00``: password, config byte, currency EUR (0978)."""
        data = bytes.fromhex(password) + bytes((config_byte,)) + bytes.fromhex("0978")
        return self.run(_apdu(0x06, 0x00, data))

    def pay(self, amount_cents: int, *, answer_delay_s: float = 0.0) -> Exchange:
        """Authorization ``06 01`` with BMP 04 (amount, 6 bytes BCD) and BMP 49 (EUR)."""
        data = b"\x04" + _bcd(amount_cents, 6) + b"\x49" + bytes.fromhex("0978")
        return self.run(_apdu(0x06, 0x01, data), answer_delay_s=answer_delay_s)

    def end_of_day(self, password: str = "000000") -> Exchange:
        """End of Day ``06 50`` with the password."""
        return self.run(_apdu(0x06, 0x50, bytes.fromhex(password)))

    def start_payment(self, amount_cents: int) -> Exchange:
        """Authorization that returns once the terminal says "insert card"."""
        data = b"\x04" + _bcd(amount_cents, 6)
        return self.run(_apdu(0x06, 0x01, data), stop_at_intermediate=True)

    def abort(self) -> Exchange:
        """Abort ``06 B0``: the cashier cancels a payment that waits for a card."""
        return self.run(_apdu(0x06, 0xB0))

    def status_enquiry(self, password: str = "000000") -> Exchange:
        """Status Enquiry ``05 01``."""
        return self.run(_apdu(0x05, 0x01, bytes.fromhex(password)))

    def close(self) -> None:
        """Release the line."""
        self.transport.close()
