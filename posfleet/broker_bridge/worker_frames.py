"""The pipe protocol between the ingest and its store writer process.

Each frame is a 4-byte big-endian length and a pickle. Both ends are the same
installation started by the same user (the writer is the ingest's own child), so pickle
is a private, trusted encoding here, never something read off the network.

Parent to writer: ``("hello", WriterConfig)`` once, then ``("store", id, StoreRequest,
urgent)`` per batch (already validated by the parent: samples and models, not bytes to
decode again). Writer to parent: ``("ready",)`` or ``("failed", reason)`` after the
hello, then ``("stored", id, StoreSummary)``, ``("transient", id, reason)`` or
``("error", id, reason)`` per batch: urgent batches may be answered before bulk ones
sent earlier, each kind in the order it was sent.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from posfleet.broker_bridge.ingest_batch import DEFAULT_HANDLERS, ChannelHandler
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S
from posfleet.contract import Channel

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30
"""Far above any batch (1,000 messages of at most 64 KiB); a larger length is corruption."""


class FrameError(Exception):
    """The other end wrote something that is not a frame of this protocol."""


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """What the writer process needs to start: sent in the hello frame, not on argv."""

    database_url: str
    """May hold a password, which is why it travels over the pipe and not the command line."""
    log_level: int
    handlers: Mapping[Channel, ChannelHandler] = field(default_factory=lambda: DEFAULT_HANDLERS)
    fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S
    """How often the writer folds the stored samples into the hourly rollups."""


def encode_frame(message: Any) -> bytes:
    """One frame holding ``message``."""
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any | None:
    """The next message, or None at a clean end of the stream."""
    try:
        head = await reader.readexactly(_LENGTH.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise FrameError("the stream ended inside a frame header") from None
        return None
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes announced: the stream is corrupt")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        raise FrameError("the stream ended inside a frame") from None
    return pickle.loads(body)


def write_frame_fd(fd: int, message: Any) -> None:
    """Write one frame to a blocking file descriptor (the writer's side)."""
    view = memoryview(encode_frame(message))
    while view:
        written = os.write(fd, view)
        view = view[written:]
