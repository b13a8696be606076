"""Sans-IO: learn from a copy of the bytes between a cash register (ECR) and its terminal.

The pass-through forwards every byte untouched; this module gets the same bytes afterwards,
reassembles them into APDUs per direction (serial frames through the framing codec, or
unframed APDUs over TCP) and keeps counters: payments, approvals, declines by result
code, card read errors, printer state, End-of-Day totals. Amounts and result codes only:
card data, receipt texts and the rest of each APDU are dropped as soon as it is decoded.

It also knows whether an exchange is open (a command sent by the ECR that the terminal has
not completed or aborted yet), which is when the agent must never talk on the link.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from posfleet.agent.drivers.zvt_messages import ZvtMessage, decode_apdu
from posfleet.agent.drivers.zvt_result_codes import ResultClass, result_code
from posfleet.agent.serial.errors import SerialLinkError
from posfleet.agent.serial.frames import FrameDecoder, FrameReceived

log = logging.getLogger(__name__)

Transport = Literal["serial", "tcp"]

AUTHORIZATION = 0x0601
END_OF_DAY = 0x0650
ECR_ABORT = 0x06B0
STATUS_ENQUIRY = 0x0501
STATUS_INFORMATION = 0x040F
COMPLETION = 0x060F
ABORT = 0x061E
PRINTER_NOT_READY = 0xCC
ABANDONED_AFTER_S = 180.0
"""ZVT's T4: an exchange with no traffic for this long is over, whatever its end was."""


class ApduSplitter:
    """Cut an unframed byte stream (ZVT over TCP) into APDUs by their length fields."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """The complete APDUs ``data`` finishes; the rest waits for more bytes."""
        self._buffer += data
        out: list[bytes] = []
        while len(self._buffer) >= 3:
            size, start = self._buffer[2], 3
            if size == 0xFF:
                if len(self._buffer) < 5:
                    break
                size, start = self._buffer[3] | self._buffer[4] << 8, 5
            if len(self._buffer) < start + size:
                break
            out.append(bytes(self._buffer[: start + size]))
            del self._buffer[: start + size]
        return out

    def reset(self) -> None:
        """Forget a partial APDU (the connection ended)."""
        self._buffer.clear()


class _Reassembler:
    def __init__(self, transport: Transport) -> None:
        self._frames = FrameDecoder() if transport == "serial" else None
        self._splitter = ApduSplitter() if transport == "tcp" else None

    def feed(self, data: bytes) -> list[bytes]:
        if self._splitter is not None:
            return self._splitter.feed(data)
        assert self._frames is not None
        return [e.apdu for e in self._frames.feed(data) if isinstance(e, FrameReceived)]

    def reset(self) -> None:
        if self._splitter is not None:
            self._splitter.reset()
        if self._frames is not None:
            self._frames.reset()


@dataclass
class _Open:
    control: int
    amount_cents: int | None
    result: int | None = None


@dataclass
class _Counts:
    transactions: int = 0
    approved: int = 0
    approved_cents: int = 0
    declined: Counter[str] = field(default_factory=Counter)
    read_errors: int = 0
    cancelled: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    printer_not_ready: int = 0
    printer_ready: bool | None = None
    end_of_day_runs: int = 0
    last_end_of_day: dict[str, Any] | None = None
    own_status_enquiries: int = 0
    undecodable: int = 0


class LinkObserver:
    """Counters and the open-exchange state of one ECR link, from copies of its bytes."""

    def __init__(self, transport: Transport, *, clock: Callable[[], float] = time.monotonic):
        self.transport = transport
        self._clock = clock
        self._from_ecr = _Reassembler(transport)
        self._from_terminal = _Reassembler(transport)
        self._open: _Open | None = None
        self._counts = _Counts()
        self.last_activity = clock()
        """When a byte last passed in either direction (the agent's own included)."""
        self._last_exchange_traffic = self.last_activity

    # --- input ------------------------------------------------------------------------

    def from_ecr(self, data: bytes) -> None:
        """Bytes the ECR sent towards the terminal."""
        self.touch()
        for raw in self._from_ecr.feed(data):
            message = self._decode(raw)
            if message is not None:
                self._ecr_message(message)

    def from_terminal(self, data: bytes) -> None:
        """Bytes the terminal sent towards the ECR."""
        self.touch()
        for raw in self._from_terminal.feed(data):
            message = self._decode(raw)
            if message is not None:
                self._terminal_message(message)

    def touch(self) -> None:
        """Traffic on the link that is not the ECR's (the agent's own exchange)."""
        self.last_activity = self._clock()

    def own_status_enquiry(self, terminal_status: int | None = None) -> None:
        """The agent ran a Status Enquiry of its own; ``terminal_status`` is what it said."""
        self._counts.own_status_enquiries += 1
        if terminal_status is not None:
            self._status(terminal_status)

    def connection_lost(self) -> None:
        """The ECR's connection ended (TCP): partial APDUs and the open exchange go."""
        self._from_ecr.reset()
        self._from_terminal.reset()
        self._open = None

    # --- state ------------------------------------------------------------------------

    @property
    def exchange_open(self) -> bool:
        """True while the ECR waits for the terminal to finish a command."""
        if self._open is not None and self._clock() - self._last_exchange_traffic > (
            ABANDONED_AFTER_S
        ):
            log.info("ECR exchange %04X abandoned without an end", self._open.control)
            self._open = None
        return self._open is not None

    @property
    def transaction_open(self) -> bool:
        """True while a payment is under way."""
        return (
            self.exchange_open and self._open is not None and (self._open.control == AUTHORIZATION)
        )

    def idle_for(self) -> float:
        """Seconds since the last byte on the link."""
        return self._clock() - self.last_activity

    def snapshot(self) -> dict[str, Any]:
        """The counters as the health report's ``ecr`` block (the contract's ``EcrLink``)."""
        c = self._counts
        block: dict[str, Any] = {
            "transactions": c.transactions,
            "approved": c.approved,
            "approved_cents": c.approved_cents,
            "declined_by_code": dict(c.declined),
            "read_errors": c.read_errors,
            "cancelled": c.cancelled,
            "failed_by_code": dict(c.failed),
            "printer_not_ready": c.printer_not_ready,
            "printer_ready": c.printer_ready,
            "transaction_open": self.transaction_open,
            "end_of_day_runs": c.end_of_day_runs,
            "last_end_of_day": c.last_end_of_day,
            "own_status_enquiries": c.own_status_enquiries,
            "undecodable": c.undecodable,
        }
        return block

    # --- messages ---------------------------------------------------------------------

    def _decode(self, raw: bytes) -> ZvtMessage | None:
        try:
            return decode_apdu(raw)
        except SerialLinkError:
            self._counts.undecodable += 1
            return None

    def _ecr_message(self, message: ZvtMessage) -> None:
        if message.cls in (0x80, 0x84):
            return  # the ECR's answer to one of the terminal's messages
        self._last_exchange_traffic = self._clock()
        if message.control == ECR_ABORT and self._open is not None:
            return  # belongs to the exchange it cancels
        amount = _amount(message) if message.control == AUTHORIZATION else None
        self._open = _Open(message.control, amount)

    def _terminal_message(self, message: ZvtMessage) -> None:
        self._last_exchange_traffic = self._clock()
        opened = self._open
        if message.cls == 0x80:
            return  # the acknowledgement of the ECR's command
        if message.cls == 0x84:
            if opened is not None and message.result_code is not None:
                self._close(opened, message.result_code)
            return
        if message.result_code == PRINTER_NOT_READY:
            self._status(PRINTER_NOT_READY)
        if message.terminal_status is not None:
            self._status(message.terminal_status)
        if opened is None:
            return
        if message.control == STATUS_INFORMATION:
            if message.result_code is not None:
                opened.result = message.result_code
            if opened.amount_cents is None or opened.control == END_OF_DAY:
                opened.amount_cents = message.amount_cents
        elif message.control == ABORT:
            self._close(opened, message.result_code if message.result_code is not None else 0xFF)
        elif message.control == COMPLETION:
            self._close(opened, opened.result if opened.result is not None else 0x00)

    def _close(self, opened: _Open, code: int) -> None:
        self._open = None
        c = self._counts
        if opened.control == END_OF_DAY:
            c.end_of_day_runs += 1
            c.last_end_of_day = {
                "total_cents": opened.amount_cents or 0,
                "result_code": f"{code:02X}",
            }
            return
        if opened.control != AUTHORIZATION:
            return
        c.transactions += 1
        kind = result_code(code).result_class
        if kind is ResultClass.SUCCESS:
            c.approved += 1
            c.approved_cents += opened.amount_cents or 0
        elif kind is ResultClass.DECLINED:
            c.declined[f"{code:02X}"] += 1
        elif kind is ResultClass.CARD_ERROR:
            c.read_errors += 1
        elif kind is ResultClass.CANCELLED:
            c.cancelled += 1
        else:
            c.failed[f"{code:02X}"] += 1

    def _status(self, code: int) -> None:
        if code == PRINTER_NOT_READY:
            self._counts.printer_not_ready += 1
            self._counts.printer_ready = False
        elif code == 0x00:
            self._counts.printer_ready = True


def _amount(message: ZvtMessage) -> int | None:
    # The amount of an Authorization is BMP 04 at its very start (6 bytes BCD).
    data = message.data
    if len(data) >= 7 and data[0] == 0x04 and data[1:7].hex().isdigit():
        return int(data[1:7].hex())
    return None
