"""Token buckets that cap download bandwidth, one per download and one for all of them.

A sender reserves its bytes before sending them; if the bucket runs into debt the sender
sleeps until the debt is paid back at the configured rate. Reservations are taken in the
order they are asked for, so many downloads sharing the total cap get it in turns, and
the cap holds exactly over time however many there are.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

MIN_SLICE = 16 * 1024
MAX_SLICE = 256 * 1024


class TokenBucket:
    """``rate`` bytes per second, with up to ``burst`` bytes sent at once after a pause."""

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("a bandwidth cap must be a positive number of bytes per second")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate / 4, MIN_SLICE))
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst
        self._stamp = clock()

    def reserve(self, nbytes: int) -> float:
        """Take ``nbytes`` now; how many seconds to wait before sending them."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= nbytes
        return max(0.0, -self._tokens / self.rate)

    async def acquire(self, nbytes: int) -> None:
        """Wait until ``nbytes`` may be sent under this cap."""
        delay = self.reserve(nbytes)
        if delay > 0:
            await self._sleep(delay)


def slice_bytes(*rates: int | None) -> int:
    """Bytes sent per step under the given caps: about a twentieth of a second's worth."""
    capped = [rate for rate in rates if rate]
    if not capped:
        return 0
    return max(MIN_SLICE, min(MAX_SLICE, min(capped) // 20))
