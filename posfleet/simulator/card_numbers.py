"""Card numbers for the simulator's careless log lines: Luhn-valid test numbers, never real."""

from __future__ import annotations

import random


def fake_pan(rng: random.Random) -> str:
    """A 16-digit number that passes the Luhn check (a test card number, never a real one)."""
    digits = [4, *(rng.randrange(10) for _ in range(14))]
    total = 0
    for i, d in enumerate(reversed(digits)):
        doubled = d * 2 if i % 2 == 0 else d
        total += doubled - 9 if doubled > 9 else doubled
    return "".join(map(str, digits)) + str((10 - total % 10) % 10)
