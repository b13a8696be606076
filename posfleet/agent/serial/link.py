"""The asyncio serial link: one request APDU out, one reply APDU back, ZVT style.

A request is framed and sent; the terminal answers ACK (or NAK, and the frame is sent again,
at most three sends in all, each waiting T3 for the answer); then the terminal sends its
reply frame, which is ACKed (or NAKed if its CRC is wrong, so the terminal repeats it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import NoAckError, PortClosedError, ReplyTimeoutError
from posfleet.agent.serial.frames import (
    ACK,
    NAK,
    AckReceived,
    BadCrc,
    FrameAborted,
    FrameDecoder,
    FrameReceived,
    GarbageSkipped,
    NakReceived,
    encode_frame,
)
from posfleet.agent.serial.port_io import BytePump, PortSettings, open_pump

log = logging.getLogger(__name__)

T3_ACK_TIMEOUT_S = 5.0
"""ZVT's T3: how long a sender waits for ACK/NAK after a frame."""
MAX_SENDS = 3
"""ZVT: a frame is sent at most three times."""
_MAX_QUEUED_EVENTS = 64


class Link(Protocol):
    """What a terminal driver needs from its link: one request, one reply."""

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Send ``apdu`` and return the terminal's reply, or raise a ``SerialLinkError``."""
        ...


@runtime_checkable
class ConversationLink(Link, Protocol):
    """A link on which the terminal may keep talking after its reply (ZVT master rights).

    After :meth:`request` returned, :meth:`receive` takes the terminal's next message and
    :meth:`send` answers it; the caller keeps the turn order of the conversation.
    """

    async def receive(self, *, reply_timeout: float) -> Apdu:
        """The next message the terminal sends (acknowledged on the line)."""
        ...

    async def send(self, apdu: Apdu) -> None:
        """Send ``apdu`` and wait for its ACK only; no reply is expected."""
        ...


@dataclass(slots=True)
class LinkStats:
    """Counters of what happened on the line, for logs and diagnostics."""

    requests: int = 0
    frames_sent: int = 0
    resends: int = 0
    naks_received: int = 0
    ack_timeouts: int = 0
    replies: int = 0
    bad_crc_frames: int = 0
    aborted_frames: int = 0
    garbage_bytes: int = 0
    stray_events: int = 0
    reopens: int = 0


class _PortLost:
    __slots__ = ("exc",)

    def __init__(self, exc: Exception) -> None:
        self.exc = exc


_Event = FrameReceived | AckReceived | NakReceived | BadCrc | _PortLost


class SerialLink:
    """A :class:`Link` over a port opened with ``serial.serial_for_url``.

    Use it as an async context manager. One exchange runs at a time (callers queue on a
    lock). If the port goes away, the next request opens it again, so an unplugged and
    re-plugged USB terminal recovers without restarting the agent.
    """

    def __init__(
        self,
        url: str,
        *,
        settings: PortSettings | None = None,
        ack_timeout: float = T3_ACK_TIMEOUT_S,
        max_sends: int = MAX_SENDS,
    ) -> None:
        if ack_timeout <= 0 or max_sends < 1:
            raise ValueError("ack_timeout must be positive and max_sends at least 1")
        self.url = url
        self.settings = settings or PortSettings()
        self.ack_timeout = ack_timeout
        self.max_sends = max_sends
        self.stats = LinkStats()
        self._decoder = FrameDecoder()
        self._events: asyncio.Queue[_Event] = asyncio.Queue()
        self._pump: BytePump | None = None
        self._exchange = asyncio.Lock()
        self._opened_once = False
        self._early: FrameReceived | None = None

    async def __aenter__(self) -> Self:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the port; a later request opens it again."""
        if self._pump is not None:
            self._pump.close()
            self._pump = None

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Send ``apdu``, wait for its ACK, then for the reply frame, and return the reply.

        Raises :class:`NoAckError` after ``max_sends`` unanswered or NAKed sends,
        :class:`ReplyTimeoutError` if no valid reply arrives within ``reply_timeout``
        seconds of the ACK, :class:`PortClosedError` / ``PortOpenError`` if the port is
        gone, and ``ApduError`` if the reply frame holds no well-formed APDU.
        """
        frame = encode_frame(apdu.encode())
        async with self._exchange:
            pump = await self._ensure_open()
            self.stats.requests += 1
            self._early = None
            self._discard_stale_events()
            early_reply = await self._send_until_acked(pump, frame)
            if early_reply is not None:
                return await self._accept(pump, early_reply)
            return await self._await_reply(pump, reply_timeout)

    async def receive(self, *, reply_timeout: float) -> Apdu:
        """Wait for a frame the terminal sends on its own; ACK it and return it.

        Used after :meth:`request` while the terminal holds the master rights (ZVT): it
        reports status, then completes. Raises :class:`ReplyTimeoutError` if nothing comes.
        """
        async with self._exchange:
            pump = await self._ensure_open()
            if self._early is not None:
                frame, self._early = self._early, None
                return await self._accept(pump, frame)
            return await self._await_reply(pump, reply_timeout)

    async def send(self, apdu: Apdu) -> None:
        """Send ``apdu`` (the ECR's answer to a terminal's message) and wait for its ACK."""
        frame = encode_frame(apdu.encode())
        async with self._exchange:
            pump = await self._ensure_open()
            early = await self._send_until_acked(pump, frame)
            if early is not None:
                # The terminal's next message overtook a lost ACK: keep it for receive().
                self._early = early

    async def _ensure_open(self) -> BytePump:
        if self._pump is None:
            self._decoder.reset()
            self._pump = await open_pump(self.url, self.settings, self._on_data, self._on_lost)
            if self._opened_once:
                self.stats.reopens += 1
            self._opened_once = True
        return self._pump

    def _on_data(self, data: bytes) -> None:
        for event in self._decoder.feed(data):
            if isinstance(event, GarbageSkipped):
                self.stats.garbage_bytes += event.count
            elif isinstance(event, FrameAborted):
                self.stats.aborted_frames += 1
                log.debug("%s: frame dropped: %s", self.url, event.reason)
            else:
                self._queue(event)

    def _on_lost(self, exc: Exception) -> None:
        log.warning("%s: serial port lost: %s", self.url, exc)
        self._pump = None
        self._queue(_PortLost(exc))

    def _queue(self, event: _Event) -> None:
        # Nobody reads between exchanges; a chattering line must not grow memory.
        if self._events.qsize() >= _MAX_QUEUED_EVENTS:
            self._events.get_nowait()
        self._events.put_nowait(event)

    def _discard_stale_events(self) -> None:
        # Anything left over belongs to an exchange that already ended (a late reply after
        # a timeout, a repeated frame): it must not be taken for this request's answer.
        while not self._events.empty():
            event = self._events.get_nowait()
            if isinstance(event, _PortLost):
                continue
            self.stats.stray_events += 1

    async def _next_event(self) -> _Event:
        event = await self._events.get()
        if isinstance(event, _PortLost):
            raise PortClosedError(f"serial port {self.url} lost: {event.exc}")
        return event

    async def _send_until_acked(self, pump: BytePump, frame: bytes) -> FrameReceived | None:
        naks = 0
        for send in range(1, self.max_sends + 1):
            if send > 1:
                self.stats.resends += 1
            await pump.write(frame)
            self.stats.frames_sent += 1
            try:
                async with asyncio.timeout(self.ack_timeout):
                    while True:
                        event = await self._next_event()
                        if isinstance(event, AckReceived):
                            return None
                        if isinstance(event, NakReceived):
                            break
                        if isinstance(event, FrameReceived):
                            # The ACK was lost on the line but the reply made it: the
                            # terminal clearly took the request, so do not send it twice.
                            return event
                        self.stats.bad_crc_frames += 1  # a reply with a bad CRC
                        await pump.write(bytes((NAK,)))
            except TimeoutError:
                self.stats.ack_timeouts += 1
                log.debug("%s: no ACK within %s s (send %d)", self.url, self.ack_timeout, send)
                continue
            naks += 1
            self.stats.naks_received += 1
            log.debug("%s: NAK for send %d", self.url, send)
        raise NoAckError(self.max_sends, naks)

    async def _await_reply(self, pump: BytePump, reply_timeout: float) -> Apdu:
        try:
            async with asyncio.timeout(reply_timeout):
                while True:
                    event = await self._next_event()
                    if isinstance(event, FrameReceived):
                        return await self._accept(pump, event)
                    if isinstance(event, BadCrc):
                        self.stats.bad_crc_frames += 1
                        await pump.write(bytes((NAK,)))
                    else:
                        self.stats.stray_events += 1
        except TimeoutError:
            raise ReplyTimeoutError(reply_timeout) from None

    async def _accept(self, pump: BytePump, frame: FrameReceived) -> Apdu:
        await pump.write(bytes((ACK,)))
        self.stats.replies += 1
        return Apdu.decode(frame.apdu)
