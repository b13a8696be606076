"""Capped exponential backoff with full jitter, for reconnecting to the broker.

A fleet that loses its broker at the same instant must not come back at the same instant:
every delay is drawn uniformly from ``[floor, min(cap, base * 2**attempt)]``, so a
thousand terminals spread their reconnects over the whole window instead of stampeding at
each doubling (paho's own reconnect doubles without jitter).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays between reconnect attempts; :meth:`reset` after a connection that held."""

    base_s: float = 1.0
    cap_s: float = 60.0
    floor_s: float = 0.1
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.cap_s:
            raise ValueError("backoff needs 0 < base_s <= cap_s")

    def next_delay(self) -> float:
        """The delay before the next attempt; each call widens the window up to the cap."""
        # The exponent stops growing once the cap is reached, so it never overflows.
        ceiling = min(self.cap_s, self.base_s * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return self.rng.uniform(min(self.floor_s, ceiling), ceiling)

    def reset(self) -> None:
        """Start again from the smallest window (the broker accepted us)."""
        self.attempt = 0
