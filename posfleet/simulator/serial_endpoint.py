"""Serve a simulated terminal on the terminal's side of a serial link: a pty or TCP.

The agent opens the far end exactly as it opens real hardware (``serial_for_url`` on the
pty's slave path, or ``socket://host:port``). ``serve_tcp(..., framing="none")`` speaks
ZVT's TCP transport instead: APDUs unframed, ``80 00 00`` as the acknowledgement
(``zvt+tcp://host:port`` on the agent's side). Everything runs on the event loop, one file
descriptor per terminal and no threads, so one process can host a thousand terminals.
:class:`LinkFaults` makes the line misbehave on purpose.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import tty
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from posfleet.agent.serial.apdu import Apdu, ApduStream
from posfleet.agent.serial.errors import ApduError
from posfleet.agent.serial.frames import (
    ACK,
    DLE,
    NAK,
    AckReceived,
    BadCrc,
    FrameDecoder,
    FrameReceived,
    NakReceived,
    encode_frame,
)
from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.simulator.zvt_responder import ZvtResponder

log = logging.getLogger(__name__)

MAX_REPLY_SENDS = 3
# Noise never contains link control bytes: a stray ACK or NAK is indistinguishable from a
# real one on this transport (by design of ZVT), so such noise tests nothing but luck.
_NOISE_BYTES = bytes(b for b in range(256) if b not in (DLE, ACK, NAK))


@dataclass
class LinkFaults:
    """Knobs that make the terminal's side of the line misbehave; change them at any time."""

    drop_next: int = 0
    """Ignore the next N request frames completely (no ACK, no reply)."""
    nak_next: int = 0
    """Answer NAK to the next N request frames, as if they arrived corrupted."""
    swallow_replies: int = 0
    """Acknowledge the next N requests but never send their replies."""
    noise: bool = False
    """Put a few random bytes on the line before every ACK and every reply frame."""
    silent: bool = False
    """Never answer anything."""
    byte_delay_s: float = 0.0
    """A slow line: every byte the terminal sends takes this long (9600 baud 8N2 is ~1.1 ms)."""


@dataclass
class EndpointStats:
    """What the terminal's side saw."""

    requests: int = 0
    bad_frames: int = 0
    reply_resends: int = 0
    dropped_output_bytes: int = 0


class Responder(Protocol):
    """Answers one APDU for a terminal; a list is a conversation (the reply comes first)."""

    terminal: SimulatedTerminal

    def handle(self, req: Apdu) -> Apdu | list[Apdu]:
        """The terminal's answer to ``req``."""
        ...


def responder_for(terminal: SimulatedTerminal) -> Responder:
    """The responder for the command set ``terminal`` speaks."""
    if terminal.protocol == "zvt":
        return ZvtResponder(terminal)
    return MaintenanceResponder(terminal)


class TerminalSession:
    """Sans-IO terminal side of one connection: bytes from the agent in, bytes to send out.

    In a conversation (ZVT) the terminal sends its next message once its previous one was
    ACKed and, after the first, once the ECR answered it with a frame of its own.
    """

    def __init__(
        self,
        responder: Responder,
        faults: LinkFaults,
        stats: EndpointStats,
        rng: random.Random,
    ) -> None:
        self.responder = responder
        self.faults = faults
        self.stats = stats
        self._rng = rng
        self._decoder = FrameDecoder()
        self._unacked_reply: bytes | None = None
        self._reply_sends = 0
        self._conversation: deque[Apdu] = deque()
        self._awaiting_answer = False

    def receive(self, data: bytes) -> bytes:
        """Consume bytes from the agent; return the bytes the terminal sends back."""
        # Scenario changes to the line (noise, silence) happen on the terminal's clock.
        self.responder.terminal.advance()
        out = bytearray()
        for event in self._decoder.feed(data):
            if self.faults.silent:
                continue
            if isinstance(event, FrameReceived):
                out += self._on_frame(event.apdu)
            elif isinstance(event, BadCrc):
                self.stats.bad_frames += 1
                out.append(NAK)
            elif isinstance(event, AckReceived):
                self._unacked_reply = None
                if self._conversation and not self._awaiting_answer:
                    out += self._next_message()
            elif isinstance(event, NakReceived):
                out += self._resend_reply()
        return bytes(out)

    def _on_frame(self, raw: bytes) -> bytes:
        if self._awaiting_answer:
            # The ECR's answer to our last message: acknowledge it and go on talking.
            self._awaiting_answer = False
            more = self._next_message() if self._conversation else b""
            return bytes((ACK,)) + more
        if self.faults.drop_next > 0:
            self.faults.drop_next -= 1
            return b""
        if self.faults.nak_next > 0:
            self.faults.nak_next -= 1
            return bytes((NAK,))
        self.stats.requests += 1
        try:
            answer = self.responder.handle(Apdu.decode(raw))
        except ApduError as exc:
            log.info("terminal got a frame that is no APDU: %s", exc)
            self.stats.bad_frames += 1
            return bytes((NAK,))
        if self.faults.swallow_replies > 0:
            self.faults.swallow_replies -= 1
            return bytes((ACK,))
        messages = [answer] if isinstance(answer, Apdu) else list(answer)
        if not messages:
            return bytes((ACK,))
        self._conversation = deque(messages[1:])
        self._awaiting_answer = False
        self._unacked_reply = encode_frame(messages[0].encode())
        self._reply_sends = 1
        return self._noise() + bytes((ACK,)) + self._noise() + self._unacked_reply

    def _next_message(self) -> bytes:
        self._unacked_reply = encode_frame(self._conversation.popleft().encode())
        self._reply_sends = 1
        self._awaiting_answer = True
        return self._noise() + self._unacked_reply

    def _resend_reply(self) -> bytes:
        if self._unacked_reply is None or self._reply_sends >= MAX_REPLY_SENDS:
            self._unacked_reply = None
            return b""
        self._reply_sends += 1
        self.stats.reply_resends += 1
        return self._noise() + self._unacked_reply

    def _noise(self) -> bytes:
        if not self.faults.noise:
            return b""
        return bytes(self._rng.choice(_NOISE_BYTES) for _ in range(self._rng.randint(1, 12)))


class UnframedSession:
    """Sans-IO terminal side of a ZVT-over-TCP connection: unframed APDUs, no ACK bytes.

    The terminal's first answer (``80 00 00`` or ``84 xx``) is its acknowledgement; it sends
    its next message with it and each further one when the ECR answered the previous one.
    """

    def __init__(self, responder: Responder, faults: LinkFaults, stats: EndpointStats) -> None:
        self.responder = responder
        self.faults = faults
        self.stats = stats
        self._stream = ApduStream()
        self._conversation: deque[Apdu] = deque()

    def receive(self, data: bytes) -> bytes:
        """Consume bytes from the ECR; return the bytes the terminal sends back."""
        self.responder.terminal.advance()
        out = bytearray()
        for raw in self._stream.feed(data):
            if self.faults.silent:
                continue
            out += self._on_apdu(raw)
        return bytes(out)

    def _on_apdu(self, raw: bytes) -> bytes:
        try:
            req = Apdu.decode(raw)
        except ApduError:  # cannot happen: the stream cut it by its own length field
            self.stats.bad_frames += 1
            return b""
        if req.is_success:
            # The ECR's answer to our last message.
            return self._conversation.popleft().encode() if self._conversation else b""
        if self.faults.drop_next > 0:
            self.faults.drop_next -= 1
            return b""
        self.stats.requests += 1
        answer = self.responder.handle(req)
        messages = [answer] if isinstance(answer, Apdu) else list(answer)
        if self.faults.swallow_replies > 0:
            self.faults.swallow_replies -= 1
            messages = messages[:1]
        if not messages:
            return b""
        first, *rest = messages
        self._conversation = deque(rest)
        out = first.encode()
        if self._conversation and first.is_success:
            out += self._conversation.popleft().encode()
        return out


class _Pacer:
    """Delivers output no faster than ``byte_delay_s`` allows, in order."""

    def __init__(self, write: Callable[[bytes], None], faults: LinkFaults) -> None:
        self._write = write
        self._faults = faults
        self._loop = asyncio.get_running_loop()
        self._free_at = 0.0
        self._pending: set[asyncio.TimerHandle] = set()

    def send(self, data: bytes) -> None:
        now = self._loop.time()
        delay = self._faults.byte_delay_s
        if delay <= 0 and self._free_at <= now:
            self._write(data)
            return
        self._free_at = max(now, self._free_at) + len(data) * delay + 1e-6
        handle: asyncio.TimerHandle | None = None

        def deliver() -> None:
            if handle is not None:
                self._pending.discard(handle)
            self._write(data)

        handle = self._loop.call_at(self._free_at, deliver)
        self._pending.add(handle)

    def close(self) -> None:
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()


@contextlib.asynccontextmanager
async def serve_pty(
    terminal: SimulatedTerminal,
    *,
    faults: LinkFaults | None = None,
    stats: EndpointStats | None = None,
    seed: int = 0,
) -> AsyncIterator[str]:
    """Serve ``terminal`` on a new pty and yield the slave's path, which the agent opens.

    Pass ``faults`` to make the line misbehave (change it while serving) and ``stats`` to
    read what the terminal's side saw.
    """
    stats = stats if stats is not None else EndpointStats()
    faults = faults or LinkFaults()
    session = TerminalSession(responder_for(terminal), faults, stats, random.Random(seed))
    master, slave = os.openpty()
    # Raw mode: the line discipline must not echo, translate CR/LF or eat control bytes.
    # The slave stays open here so the master never sees a hang-up between agent sessions.
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    loop = asyncio.get_running_loop()
    pacer = _Pacer(lambda data: _write_or_drop(master, data, stats), faults)

    def readable() -> None:
        try:
            data = os.read(master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            log.warning("pty %s failed: %s", path, exc)
            loop.remove_reader(master)
            return
        reply = session.receive(data)
        if reply:
            pacer.send(reply)

    loop.add_reader(master, readable)
    try:
        yield path
    finally:
        pacer.close()
        loop.remove_reader(master)
        os.close(master)
        os.close(slave)


def _write_or_drop(fd: int, data: bytes, stats: EndpointStats) -> None:
    # A serial line does not wait for a listener: what the peer does not take is lost.
    try:
        written = os.write(fd, data)
    except (BlockingIOError, InterruptedError):
        written = 0
    stats.dropped_output_bytes += len(data) - written


@contextlib.asynccontextmanager
async def serve_tcp(
    terminal: SimulatedTerminal,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: LinkFaults | None = None,
    stats: EndpointStats | None = None,
    seed: int = 0,
    framing: Literal["serial", "none"] = "serial",
) -> AsyncIterator[str]:
    """Serve ``terminal`` on TCP and yield its URL.

    ``framing="serial"``: the serial line's bytes over TCP (``socket://host:port``);
    ``framing="none"``: ZVT's TCP transport, unframed APDUs (``zvt+tcp://host:port``).
    Each connection gets its own session; ``faults`` and ``stats`` are shared by all.
    """
    faults = faults or LinkFaults()
    stats = stats if stats is not None else EndpointStats()
    url = ""
    responder = responder_for(terminal)
    connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections[task] = writer
        session: TerminalSession | UnframedSession
        if framing == "none":
            session = UnframedSession(responder, faults, stats)
        else:
            session = TerminalSession(responder, faults, stats, random.Random(seed))
        try:
            while data := await reader.read(4096):
                reply = session.receive(data)
                if reply:
                    if faults.byte_delay_s > 0:
                        await asyncio.sleep(len(reply) * faults.byte_delay_s)
                    writer.write(reply)
                    await writer.drain()
        except (ConnectionError, OSError) as exc:
            log.info("simulated terminal %s: connection lost: %s", url, exc)
        finally:
            connections.pop(task, None)
            writer.close()

    server = await asyncio.start_server(connected, host, port)
    bound = server.sockets[0].getsockname()
    scheme = "zvt+tcp" if framing == "none" else "socket"
    url = f"{scheme}://{bound[0]}:{bound[1]}"
    try:
        yield url
    finally:
        server.close()
        # Closing the transport ends each session's read loop with EOF; cancelling the
        # tasks instead makes asyncio's stream machinery log the cancellation as an error.
        tasks = list(connections)
        for writer in connections.values():
            writer.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
