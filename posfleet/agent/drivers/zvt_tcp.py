"""ZVT over TCP/IP: APDUs unframed on a TCP connection (port 20007 by default).

No DLE STX/ETX, no CRC, no ACK/NAK bytes: TCP already delivers the bytes intact and in
order, and every APDU's length field marks where it ends. The terminal answers a command
with the APDU ``80 00 00`` (or ``84 xx``) where the serial line has the byte ``06``; the ECR
answers each of the terminal's messages with ``80 00 00``, which needs no answer itself.

Timeouts as on the serial line: T3 (5 s) for the terminal's ``80 00 00`` after a command,
at most three sends, and T4 (the driver's completion timeout) for the messages that follow.
A lost connection is opened again by the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from posfleet.agent.serial.apdu import Apdu, ApduStream
from posfleet.agent.serial.errors import (
    NoAckError,
    PortClosedError,
    PortOpenError,
    ReplyTimeoutError,
)
from posfleet.agent.serial.link import MAX_SENDS, T3_ACK_TIMEOUT_S, LinkStats
from posfleet.async_tasks import cancel_and_wait

log = logging.getLogger(__name__)

ZVT_TCP_SCHEME = "zvt+tcp"
DEFAULT_ZVT_PORT = 20007
_MAX_QUEUED = 64


def is_zvt_tcp_url(url: str) -> bool:
    """True for ``zvt+tcp://host[:port]``."""
    return url.startswith(f"{ZVT_TCP_SCHEME}://")


def parse_zvt_tcp_url(url: str) -> tuple[str, int]:
    """Host and port of ``zvt+tcp://host[:port]`` (port 20007 if not given).

    Raises ``ValueError`` with a message a person understands.
    """
    parts = urlsplit(url)
    if parts.scheme != ZVT_TCP_SCHEME or not parts.hostname:
        raise ValueError(f"{url!r} is not zvt+tcp://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"{url!r}: zvt+tcp:// takes only a host and a port")
    try:
        port = parts.port or DEFAULT_ZVT_PORT
    except ValueError:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535") from None
    return parts.hostname, port


class ZvtTcpLink:
    """A :class:`~posfleet.agent.serial.link.ConversationLink` over ZVT's TCP transport.

    Use it as an async context manager; one exchange runs at a time.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_ZVT_PORT,
        *,
        ack_timeout: float = T3_ACK_TIMEOUT_S,
        max_sends: int = MAX_SENDS,
        connect_timeout: float = 10.0,
    ) -> None:
        if ack_timeout <= 0 or max_sends < 1:
            raise ValueError("ack_timeout must be positive and max_sends at least 1")
        self.host, self.port = host, port
        self.url = f"{ZVT_TCP_SCHEME}://{host}:{port}"
        self.ack_timeout = ack_timeout
        self.max_sends = max_sends
        self.connect_timeout = connect_timeout
        self.stats = LinkStats()
        self._stream = ApduStream()
        self._apdus: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._exchange = asyncio.Lock()
        self._opened_once = False

    @classmethod
    def from_url(
        cls, url: str, *, ack_timeout: float = T3_ACK_TIMEOUT_S, max_sends: int = MAX_SENDS
    ) -> ZvtTcpLink:
        """A link to ``zvt+tcp://host[:port]``."""
        host, port = parse_zvt_tcp_url(url)
        return cls(host, port, ack_timeout=ack_timeout, max_sends=max_sends)

    async def __aenter__(self) -> Self:
        await self._ensure_open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; a later request opens it again."""
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
        await cancel_and_wait(task)

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Send ``apdu`` and return the terminal's answer (``80 00 ..`` or ``84 xx``).

        Each send waits T3 for the answer; after ``max_sends`` silent sends,
        :class:`NoAckError`. ``reply_timeout`` is not used: over TCP the answer *is* the
        acknowledgement.
        """
        async with self._exchange:
            await self._ensure_open()
            self.stats.requests += 1
            self._discard_stale()
            for send in range(1, self.max_sends + 1):
                if send > 1:
                    self.stats.resends += 1
                await self._write(apdu)
                try:
                    answer = await self._next(self.ack_timeout)
                except ReplyTimeoutError:
                    self.stats.ack_timeouts += 1
                    log.debug(
                        "%s: no answer within %s s (send %d)", self.url, self.ack_timeout, send
                    )
                    continue
                self.stats.replies += 1
                return answer
            raise NoAckError(self.max_sends, 0)

    async def receive(self, *, reply_timeout: float) -> Apdu:
        """The terminal's next message (the caller answers it with :meth:`send`)."""
        async with self._exchange:
            await self._ensure_open()
            message = await self._next(reply_timeout)
            self.stats.replies += 1
            return message

    async def send(self, apdu: Apdu) -> None:
        """Send ``apdu`` (the ECR's ``80 00 00`` to a terminal's message); no answer comes."""
        async with self._exchange:
            await self._ensure_open()
            await self._write(apdu)

    async def _ensure_open(self) -> None:
        if self._writer is not None and not self._writer.is_closing():
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise PortOpenError(self.url, str(exc) or "connection timed out") from exc
        if self._opened_once:
            self.stats.reopens += 1
        self._opened_once = True
        self._stream = ApduStream()
        self._apdus = asyncio.Queue()
        self._writer = writer
        self._reader_task = asyncio.create_task(
            self._read(reader, writer), name=f"zvt-tcp {self.url}"
        )

    async def _read(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        queue, stream = self._apdus, self._stream  # this connection's, not a later one's
        try:
            while data := await reader.read(4096):
                for raw in stream.feed(data):
                    if queue.qsize() >= _MAX_QUEUED:
                        queue.get_nowait()
                        self.stats.stray_events += 1
                    queue.put_nowait(raw)
        except (ConnectionError, OSError) as exc:
            log.warning("%s: connection lost: %s", self.url, exc)
        if self._writer is writer:
            # The terminal hung up: the next command connects again.
            self._writer = None
            writer.close()
        queue.put_nowait(None)  # end of stream

    async def _write(self, apdu: Apdu) -> None:
        writer = self._writer
        if writer is None:
            raise PortClosedError(f"{self.url} is closed")
        try:
            writer.write(apdu.encode())
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            self._writer = None
            raise PortClosedError(f"{self.url} lost: {exc}") from exc
        self.stats.frames_sent += 1

    async def _next(self, wait_s: float) -> Apdu:
        try:
            async with asyncio.timeout(wait_s):
                raw = await self._apdus.get()
        except TimeoutError:
            raise ReplyTimeoutError(wait_s) from None
        if raw is None:
            self._writer = None
            raise PortClosedError(f"{self.url}: the terminal closed the connection")
        return Apdu.decode(raw)

    def _discard_stale(self) -> None:
        while not self._apdus.empty():
            if self._apdus.get_nowait() is None:
                continue
            self.stats.stray_events += 1
