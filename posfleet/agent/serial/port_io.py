"""Move bytes between a pyserial port and the asyncio event loop without blocking it.

Ports with a selectable file descriptor (serial devices, ptys, ``socket://``) are driven by
the loop itself (``add_reader`` / ``add_writer`` with non-blocking reads and writes): no
thread per port, which matters when one process runs hundreds of agents (the fleet
simulator). Ports without one (``rfc2217://``, ``loop://``) get one reader thread each;
pyserial's RFC 2217 client already runs a thread of its own, so that costs little more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import serial

from posfleet.agent.serial.errors import PortClosedError, PortOpenError

log = logging.getLogger(__name__)

READ_CHUNK = 4096
_THREAD_POLL_S = 0.1  # how often a reader thread notices that its port was closed


@dataclass(frozen=True, slots=True)
class PortSettings:
    """Line settings; ZVT terminals default to 9600 baud, 8 data bits, no parity, 2 stop bits."""

    baudrate: int = 9600
    bytesize: int = 8
    parity: str = "N"
    stopbits: float = 2


class BytePump(Protocol):
    """Delivers received bytes to a callback and writes bytes out."""

    async def write(self, data: bytes) -> None:
        """Send ``data``; returns when the port has taken all of it."""

    def close(self) -> None:
        """Stop pumping and close the port."""


OnData = Callable[[bytes], None]
OnLost = Callable[[Exception], None]


async def open_pump(url: str, settings: PortSettings, on_data: OnData, on_lost: OnLost) -> BytePump:
    """Open the port at ``url`` (any ``serial_for_url`` URL) and start pumping bytes."""
    try:
        # Opening may connect a socket or probe a device: keep it off the loop.
        port: Any = await asyncio.to_thread(
            serial.serial_for_url,
            url,
            baudrate=settings.baudrate,
            bytesize=settings.bytesize,
            parity=settings.parity,
            stopbits=settings.stopbits,
            timeout=0,
            write_timeout=0,
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        raise PortOpenError(url, str(exc)) from exc
    try:
        fd = port.fileno()
    except (AttributeError, OSError, ValueError):
        fd = None
    if isinstance(fd, int):
        return _LoopPump(port, fd, on_data, on_lost)
    port.timeout = _THREAD_POLL_S
    port.write_timeout = None
    return _ThreadPump(port, url, on_data, on_lost)


class _LoopPump:
    def __init__(self, port: Any, fd: int, on_data: OnData, on_lost: OnLost) -> None:
        self._port = port
        self._fd = fd
        self._on_data = on_data
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._pending = bytearray()
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._loop.add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data: bytes = self._port.read(READ_CHUNK)
        except (serial.SerialException, OSError) as exc:
            self._lose(exc)
            return
        if data:
            self._on_data(data)

    def _lose(self, exc: Exception) -> None:
        if self._closed:
            return
        self.close()
        self._on_lost(exc)

    async def write(self, data: bytes) -> None:
        if self._closed:
            raise PortClosedError("serial port is closed")
        self._pending += data
        if self._drained is None:
            self._flush()
            if self._pending and not self._closed:
                self._drained = self._loop.create_future()
                self._loop.add_writer(self._fd, self._writable)
        if self._drained is not None:
            await asyncio.shield(self._drained)

    def _flush(self) -> None:
        try:
            written: int | None = self._port.write(bytes(self._pending))
        except (serial.SerialException, OSError) as exc:
            self._lose(exc)
            return
        del self._pending[: written or 0]

    def _writable(self) -> None:
        self._flush()
        if not self._pending and self._drained is not None:
            self._loop.remove_writer(self._fd)
            drained, self._drained = self._drained, None
            if not drained.done():
                drained.set_result(None)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._loop.remove_reader(self._fd)
        self._loop.remove_writer(self._fd)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(PortClosedError("serial port closed while writing"))
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()


class _ThreadPump:
    def __init__(self, port: Any, url: str, on_data: OnData, on_lost: OnLost) -> None:
        self._port = port
        self._on_data = on_data
        self._on_lost = on_lost
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._write_lock = asyncio.Lock()
        self._thread = threading.Thread(target=self._run, name=f"serial-reader {url}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data: bytes = self._port.read(READ_CHUNK)
            except (serial.SerialException, OSError) as exc:
                if not self._stop.is_set():
                    self._loop.call_soon_threadsafe(self._lost, exc)
                return
            if data:
                self._loop.call_soon_threadsafe(self._on_data, data)

    def _lost(self, exc: Exception) -> None:
        if not self._stop.is_set():
            self.close()
            self._on_lost(exc)

    async def write(self, data: bytes) -> None:
        if self._stop.is_set():
            raise PortClosedError("serial port is closed")
        async with self._write_lock:
            try:
                await asyncio.to_thread(self._port.write, data)
            except (serial.SerialException, OSError) as exc:
                raise PortClosedError(f"serial port lost: {exc}") from exc

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(serial.SerialException, OSError):
            self._port.close()
