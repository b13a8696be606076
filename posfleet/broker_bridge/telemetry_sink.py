"""Where stored telemetry is copied to after each committed batch (InfluxDB, ...)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from posfleet.contract import Message


@dataclass(slots=True)
class SinkStats:
    """Counters of one telemetry sink, as ``/metrics`` shows them."""

    written: int = 0
    """Points the backend accepted."""
    dropped: int = 0
    """Points discarded: the buffer was full, or the backend refused them for good."""
    errors: int = 0
    """Failed write attempts (each retried one counts)."""
    buffered: int = 0
    """Points waiting to be written."""


class TelemetrySink(Protocol):
    """Takes newly stored messages without blocking; writes them in the background."""

    name: str
    stats: SinkStats

    def submit(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` for writing; never blocks and never raises."""
        ...
