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

from collections.abc import Mapping
from dataclasses import dataclass, field

from posfleet.broker_bridge.ingest_batch import DEFAULT_HANDLERS, ChannelHandler
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S
from posfleet.contract import Channel
from posfleet.pipe_frames import FrameError, encode_frame, read_frame, write_frame_fd

__all__ = ["FrameError", "WriterConfig", "encode_frame", "read_frame", "write_frame_fd"]


@dataclass(frozen=True, slots=True)
class WriterConfig:
    """What the writer process needs to start: sent in the hello frame, not on argv."""

    database_url: str
    """May hold a password, which is why it travels over the pipe and not the command line."""
    log_level: int
    handlers: Mapping[Channel, ChannelHandler] = field(default_factory=lambda: DEFAULT_HANDLERS)
    fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S
    """How often the writer folds the stored samples into the hourly rollups."""
