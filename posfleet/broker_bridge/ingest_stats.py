"""Counters of the ingest, and a latency histogram, as ``/metrics`` exposes them."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds of the batch latency histogram, in seconds (Prometheus ``le`` labels)."""


@dataclass(slots=True)
class Histogram:
    """A cumulative-bucket histogram in the Prometheus sense: counts, sum, and total."""

    bounds: tuple[float, ...] = LATENCY_BUCKETS_S
    counts: list[int] = field(default_factory=list)
    total: int = 0
    sum: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        index = bisect.bisect_left(self.bounds, value)
        if index < len(self.counts):
            self.counts[index] += 1
        self.total += 1
        self.sum += value

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` pairs, as Prometheus buckets are."""
        running = 0
        pairs = []
        for bound, count in zip(self.bounds, self.counts, strict=True):
            running += count
            pairs.append((bound, running))
        return pairs


@dataclass(slots=True)
class IngestStats:
    """Counters of one ingest instance; read them from the event loop's thread."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    batches: int = 0
    queue_depth: int = 0
    store_retries: int = 0
    hook_errors: int = 0
    writer_restarts: int = 0
    """Times the store writer process had to be started again after it died."""
    connects: int = 0
    oversize: int = 0
    """Payloads above the contract's limit that reached us; each is also a dead letter."""
    other_partition: int = 0
    """Messages of terminals another instance serves (partition mode), acknowledged unread."""
    decode_seconds: float = 0.0
    """CPU time the event loop's thread spent decoding and validating batches."""
    batch_latency: Histogram = field(default_factory=Histogram)
    """Seconds from taking a batch off the queue to its commit and acknowledgement."""

    @property
    def processed(self) -> int:
        """Messages fully dealt with: stored, duplicates, dead letters and ignored ones."""
        return self.stored + self.duplicates + self.dead_lettered + self.ignored
