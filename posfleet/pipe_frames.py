"""Frames on a pipe between a process and its own child: a 4-byte big-endian length and
a pickle.

Both ends are the same installation started by the same user, so pickle is a private,
trusted encoding here, never something read off the network. The store writer
(:mod:`~posfleet.broker_bridge.worker_frames`) and the rule worker
(:mod:`~posfleet.diagnostics.rule_worker`) speak it.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import struct
from typing import Any, BinaryIO

_LENGTH = struct.Struct(">I")
MAX_FRAME_BYTES = 1 << 30
"""Far above any batch (1,000 messages of at most 64 KiB); a larger length is corruption."""


class FrameError(Exception):
    """The other end wrote something that is not a frame of this protocol."""


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


def read_frame_blocking(stream: BinaryIO) -> Any | None:
    """The next message from a blocking stream (a child's stdin), or None at a clean end."""
    head = stream.read(_LENGTH.size)
    if not head:
        return None
    if len(head) < _LENGTH.size:
        raise FrameError("the stream ended inside a frame header")
    (length,) = _LENGTH.unpack(head)
    if length > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {length} bytes announced: the stream is corrupt")
    body = stream.read(length)
    if len(body) < length:
        raise FrameError("the stream ended inside a frame")
    return pickle.loads(body)
