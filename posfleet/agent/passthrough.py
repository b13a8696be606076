"""ZVT pass-through: the agent between a cash register (ECR) and its terminal.

Every byte is forwarded the moment it is read, unchanged and in order, in both directions
(one write per read, no re-framing); a copy goes to :class:`LinkObserver`, which learns
payments, declines, read errors, printer state and End-of-Day totals from it.

The agent talks to the terminal itself (a Status Enquiry, through :class:`PassthroughLink`,
which the ZVT driver uses like a serial link) only once the link has been idle for
``idle_s`` and no ECR exchange is open. While its own exchange runs, the terminal's bytes
go to the agent and what the ECR sends waits, then goes out in order as soon as the
exchange ends (a few tens of milliseconds; the ECR's T3 is 5 s).

Serial only here: both ports are opened with ``serial_for_url`` (devices, ptys,
``socket://``); the input already waiting on either port when the agent starts is
discarded, since it was sent to an agent that was not there (an ECR's retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import serial

from posfleet.agent.drivers.base import HealthData
from posfleet.agent.passthrough_observer import LinkObserver
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import NoAckError, PortClosedError, ReplyTimeoutError
from posfleet.agent.serial.frames import (
    ACK,
    NAK,
    AckReceived,
    BadCrc,
    FrameDecoder,
    FrameReceived,
    NakReceived,
    encode_frame,
)
from posfleet.agent.serial.link import MAX_SENDS, T3_ACK_TIMEOUT_S
from posfleet.agent.serial.port_io import BytePump, PortSettings, open_pump
from posfleet.async_tasks import cancel_and_wait

log = logging.getLogger(__name__)

DEFAULT_IDLE_S = 20.0
_CONVERSATION_ENDS = (0x060F, 0x061E)


def _discard_waiting_input(url: str, settings: PortSettings) -> None:
    try:
        port: Any = serial.serial_for_url(
            url, baudrate=settings.baudrate, stopbits=settings.stopbits, timeout=0
        )
    except (serial.SerialException, OSError, ValueError):
        return  # open_pump reports it properly
    with contextlib.suppress(serial.SerialException, OSError, AttributeError):
        port.reset_input_buffer()
    with contextlib.suppress(serial.SerialException, OSError):
        port.close()


class SerialPassthrough:
    """Forward between the ECR's port and the terminal's port; an async context manager."""

    def __init__(
        self,
        ecr_url: str,
        terminal_url: str,
        *,
        settings: PortSettings | None = None,
        idle_s: float = DEFAULT_IDLE_S,
        ack_timeout: float = T3_ACK_TIMEOUT_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ecr_url = ecr_url
        self.terminal_url = terminal_url
        self.settings = settings or PortSettings()
        self.idle_s = idle_s
        self.observer = LinkObserver("serial", clock=clock)
        self.link = PassthroughLink(self, ack_timeout=ack_timeout)
        self.forward_delays_s: list[float] = []
        """Read-to-written time of every forwarded chunk (the agent's added latency)."""
        self.own_exchanges: list[tuple[float, float]] = []
        """(start, end) of every exchange the agent held the terminal for itself."""
        self._clock = clock
        self._ecr: BytePump | None = None
        self._terminal: BytePump | None = None
        self._held_from_ecr = bytearray()
        self._holding = False
        self._to_terminal: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._to_ecr: asyncio.Queue[tuple[bytes, float]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.lost: asyncio.Event = asyncio.Event()

    async def __aenter__(self) -> Self:
        for url in (self.ecr_url, self.terminal_url):
            await asyncio.to_thread(_discard_waiting_input, url, self.settings)
        self._terminal = await open_pump(
            self.terminal_url, self.settings, self._from_terminal, self._on_lost
        )
        self._ecr = await open_pump(self.ecr_url, self.settings, self._from_ecr, self._on_lost)
        self._tasks = [
            asyncio.create_task(self._writer(self._to_terminal, self._terminal), name="to-pt"),
            asyncio.create_task(self._writer(self._to_ecr, self._ecr), name="to-ecr"),
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(*self._tasks)
        for pump in (self._ecr, self._terminal):
            if pump is not None:
                pump.close()

    # --- forwarding -------------------------------------------------------------------

    def _from_ecr(self, data: bytes) -> None:
        if self._holding:
            self._held_from_ecr += data
        else:
            self._to_terminal.put_nowait((data, self._clock()))
        self.observer.from_ecr(data)

    def _from_terminal(self, data: bytes) -> None:
        if self._holding:
            self.observer.touch()
            self.link.feed(data)
            return
        self._to_ecr.put_nowait((data, self._clock()))
        self.observer.from_terminal(data)

    async def _writer(self, queue: asyncio.Queue[tuple[bytes, float]], pump: BytePump) -> None:
        while True:
            data, read_at = await queue.get()
            try:
                await pump.write(data)
            except PortClosedError as exc:
                self._on_lost(exc)
                return
            self.forward_delays_s.append(self._clock() - read_at)

    def _on_lost(self, exc: Exception) -> None:
        log.error("pass-through: a port was lost: %s", exc)
        self.lost.set()

    # --- the agent's own turn -----------------------------------------------------------

    def may_talk(self) -> bool:
        """True when the agent may start an exchange of its own right now."""
        return (
            not self._holding
            and not self.observer.exchange_open
            and self.observer.idle_for() >= self.idle_s
            and self._to_terminal.empty()
            and self._to_ecr.empty()
        )

    async def hold(self) -> None:
        """Wait for an idle gap with no exchange open, then take the terminal for the agent."""
        while not self.may_talk():
            wait = max(0.005, self.idle_s - self.observer.idle_for())
            await asyncio.sleep(min(wait, 1.0))
        self._holding = True
        self.own_exchanges.append((self._clock(), float("nan")))

    def release(self) -> None:
        """Give the terminal back to the ECR and send on what it said meanwhile."""
        if not self._holding:
            return
        self._holding = False
        start, _ = self.own_exchanges[-1]
        self.own_exchanges[-1] = (start, self._clock())
        self.observer.touch()
        if self._held_from_ecr:
            self._to_terminal.put_nowait((bytes(self._held_from_ecr), self._clock()))
            self._held_from_ecr.clear()

    async def write_own(self, data: bytes) -> None:
        """Bytes of the agent's own exchange, to the terminal."""
        if self._terminal is None:
            raise PortClosedError("pass-through is not running")
        self.observer.touch()
        await self._terminal.write(data)


class PassthroughLink:
    """The ZVT driver's link while the agent passes an ECR's traffic through.

    ``request`` waits for the agent's turn (:meth:`SerialPassthrough.hold`) and the turn
    ends when the driver has answered the terminal's Completion or Abort, or on any error.
    """

    def __init__(self, owner: SerialPassthrough, *, ack_timeout: float) -> None:
        self._owner = owner
        self.ack_timeout = ack_timeout
        self._decoder = FrameDecoder()
        self._events: asyncio.Queue[FrameReceived | AckReceived | NakReceived | BadCrc] = (
            asyncio.Queue()
        )
        self._ending = False

    def feed(self, data: bytes) -> None:
        """Terminal bytes while the agent holds the link."""
        for event in self._decoder.feed(data):
            if isinstance(event, FrameReceived | AckReceived | NakReceived | BadCrc):
                self._events.put_nowait(event)

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Send ``apdu`` in an idle gap and return the terminal's reply."""
        await self._owner.hold()
        self._decoder.reset()
        self._events = asyncio.Queue()
        self._ending = False
        try:
            await self._send(apdu)
            reply = await self._receive(reply_timeout)
        except BaseException:
            self._owner.release()
            raise
        if not reply.is_success:
            self._owner.release()
        return reply

    async def receive(self, *, reply_timeout: float) -> Apdu:
        """The terminal's next message in the agent's exchange (ACKed)."""
        try:
            message = await self._receive(reply_timeout)
        except BaseException:
            self._owner.release()
            raise
        if message.cls << 8 | message.ins in _CONVERSATION_ENDS:
            self._ending = True
            if message.cls << 8 | message.ins == 0x060F and message.data[:1] == b"\xf0":
                self._owner.observer.own_status_enquiry(_terminal_status(message.data))
        return message

    async def send(self, apdu: Apdu) -> None:
        """The agent's answer to a terminal message; the turn ends after the last one."""
        try:
            await self._send(apdu)
        finally:
            if self._ending:
                self._ending = False
                self._owner.release()

    async def _send(self, apdu: Apdu) -> None:
        frame = encode_frame(apdu.encode())
        for _ in range(MAX_SENDS):
            await self._owner.write_own(frame)
            try:
                async with asyncio.timeout(self.ack_timeout):
                    while True:
                        event = await self._events.get()
                        if isinstance(event, AckReceived):
                            return
                        if isinstance(event, NakReceived):
                            break
            except TimeoutError:
                continue
        raise NoAckError(MAX_SENDS, 0)

    async def _receive(self, reply_timeout: float) -> Apdu:
        try:
            async with asyncio.timeout(reply_timeout):
                while True:
                    event = await self._events.get()
                    if isinstance(event, FrameReceived):
                        await self._owner.write_own(bytes((ACK,)))
                        return Apdu.decode(event.apdu)
                    if isinstance(event, BadCrc):
                        await self._owner.write_own(bytes((NAK,)))
        except TimeoutError:
            raise ReplyTimeoutError(reply_timeout) from None


def _terminal_status(data: bytes) -> int | None:
    # Completion after a Status Enquiry: LLLVAR software version, then the status byte.
    if len(data) < 3 or any(b & 0xF0 != 0xF0 for b in data[:3]):
        return None
    size = int("".join(str(b & 0x0F) for b in data[:3]))
    return data[3 + size] if len(data) > 3 + size else None


ObservedHealth = Callable[[HealthData], HealthData]
"""Adds what the pass-through saw to a health reading."""


def add_ecr_block(passthrough: SerialPassthrough) -> ObservedHealth:
    """The daemon's hook: each health report gets the pass-through's ``ecr`` counters."""

    def observed(metrics: HealthData) -> HealthData:
        return {**metrics, "ecr": passthrough.observer.snapshot()}

    return observed
