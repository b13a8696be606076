"""How a simulated terminal reads cards, attempt by attempt, as a real reader counts them.

A cardholder taps, inserts or swipes a card. When the reader cannot read it the terminal
shows "try again" (ZVT 0x64 card not readable, 0x72 chip error) and the cardholder tries
again, up to :data:`READ_ATTEMPTS` times in all, before the sale is given up. A real
terminal's reader counters count every attempt as a read and every failed attempt as an
error, so a failing reader's read counter grows faster than its sales and its error
share is the share of failed attempts. That share is what the card-reader rule judges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

Interface = Literal["contactless", "chip", "magstripe"]

INTERFACES: tuple[Interface, ...] = ("contactless", "chip", "magstripe")
INTERFACE_SHARE = (60, 35, 5)
"""How cardholders pay, in percent: mostly tapping, a third inserting, a few swiping."""

READ_ATTEMPTS = 3
"""Tries per sale: the first and two "please try again" before the sale is given up."""

READER_FAULT_RATE = 0.05
"""Error rate above which the terminal itself reports failing card reads."""

READER_OK_RATE = 0.02
"""Error rate at or below which the terminal counts its reader as working again."""


@dataclass
class ReadCounts:
    """Reads and failed reads on one interface (per reboot, or for the terminal's life)."""

    reads: int = 0
    errors: int = 0


@dataclass
class ErrorRamp:
    """An error rate moving linearly from ``start_rate`` at ``start_t`` to ``end_rate``."""

    start_t: float
    end_t: float
    start_rate: float
    end_rate: float

    def at(self, t: float) -> float:
        """The rate at simulated time ``t``."""
        if t >= self.end_t or self.end_t <= self.start_t:
            return self.end_rate
        share = max(0.0, t - self.start_t) / (self.end_t - self.start_t)
        return self.start_rate + (self.end_rate - self.start_rate) * share


def choose_interface(rng: random.Random) -> Interface:
    """The interface the next cardholder pays with."""
    return rng.choices(INTERFACES, INTERFACE_SHARE)[0]


def read_attempts(rng: random.Random, error_rate: float) -> tuple[int, int]:
    """``(reads, errors)`` of one cardholder's tries: until a read works or tries run out.

    A working read ends the tries, so ``errors == reads`` means the card was never read.
    """
    reads = errors = 0
    while reads < READ_ATTEMPTS:
        reads += 1
        if rng.random() >= error_rate:
            break
        errors += 1
    return reads, errors
