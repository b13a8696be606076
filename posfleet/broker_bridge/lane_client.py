"""The paho client of an ingest lane: it reads the socket in chunks and acknowledges in bulk.

Out of the box, paho-mqtt reads each incoming packet with at least three ``recv`` calls
(the command byte, each byte of the remaining length, the rest), waits in ``select``
before every packet, and sends each PUBACK with a ``send`` of its own, plus a wake-up
byte through its socket pair when the PUBACK is queued from another thread, as the
ingest's acknowledgements are. A lane receives thousands of small reports a second, so
those system calls were about a third of the lane thread's CPU (``bench/central_capacity``).

:class:`LaneClient` changes only that plumbing, not paho's protocol handling:

- its socket (:class:`ChunkedSocket`) takes up to :data:`READ_CHUNK` bytes per ``recv``
  and hands paho the small reads it asks for from that chunk; ``pending()`` tells paho's
  loop that bytes are waiting, as it already asks a TLS socket;
- its ``loop_read`` goes on reading packets while the chunk still holds some (up to
  :data:`PACKETS_PER_READ`), instead of going back to ``select`` after each one;
- :meth:`LaneClient.ack_all` queues a committed batch's PUBACKs as one write.

These reach into three of paho's internals (``_create_socket``, ``_sock`` and
``_packet_queue``), which is why the project pins paho below 3 and why
``tests/unit/test_lane_client.py`` checks them against the installed paho.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

log = logging.getLogger(__name__)

__all__ = ["PACKETS_PER_READ", "READ_CHUNK", "ChunkedSocket", "LaneClient"]

READ_CHUNK = 64 * 1024
"""Bytes asked of the socket per ``recv``: a few hundred health reports."""

PACKETS_PER_READ = 256
"""Packets read from one chunk before paho's loop may look at its other work (writes,
keep-alive) again."""

_PUBACK = struct.Struct("!BBH")
_PUBACK_COMMAND = 0x40


class ChunkedSocket:
    """A connected socket (plain or TLS) whose reads are served from one large ``recv``.

    ``recv(n)`` never returns more than ``n`` bytes and returns what the socket would
    have, in the same order; it only asks the socket when the chunk is used up, so it
    raises what the socket raises (``BlockingIOError`` when nothing is there) only then.
    Everything else (``send``, ``fileno``, ``close``, TLS handshakes) goes to the socket.
    """

    __slots__ = ("_chunk", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._chunk = b""
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Bytes read from the socket that paho has not asked for yet."""
        return len(self._chunk) - self._pos

    def recv(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes, from the chunk, or from the socket once it is used up."""
        chunk, pos = self._chunk, self._pos
        if pos >= len(chunk):
            chunk = bytes(self._sock.recv(max(bufsize, READ_CHUNK)))
            if not chunk:
                return chunk  # the peer closed the connection
            self._chunk, pos = chunk, 0
        end = min(pos + bufsize, len(chunk))
        self._pos = end
        return chunk[pos:end]

    def pending(self) -> int:
        """Bytes readable without waiting: the chunk's, and a TLS socket's own."""
        inner = getattr(self._sock, "pending", None)
        return self.buffered + (inner() if inner is not None else 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class LaneClient(mqtt.Client):
    """A paho client with chunked reads and bulk acknowledgements (see the module)."""

    def _create_socket(self) -> Any:
        return ChunkedSocket(super()._create_socket())

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        """Read packets while the socket's chunk holds more (paho reads one per call)."""
        rc = super().loop_read(max_packets)
        for _ in range(PACKETS_PER_READ):
            sock = getattr(self, "_sock", None)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or not isinstance(sock, ChunkedSocket):
                break
            if not sock.buffered:
                break
            rc = super().loop_read(max_packets)
        return rc

    def ack_all(self, mids: Iterable[int]) -> None:
        """Send a PUBACK for each QoS 1 message id in ``mids``, all in one write.

        Only for a client made with ``manual_ack=True``, from any thread, as paho's own
        ``ack`` is. The packets are the ones ``ack`` would send (MQTT 5 allows leaving
        out the reason code when it is success).
        """
        packet = b"".join([_PUBACK.pack(_PUBACK_COMMAND, 2, mid) for mid in mids])
        if packet:
            self._packet_queue(_PUBACK_COMMAND, packet, 0, 0)
