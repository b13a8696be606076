"""A bounded hand-off from paho's network thread to the asyncio consumer.

``put`` runs on paho's thread and blocks while the buffer is full: that is the
backpressure (paho stops reading the socket, the broker holds the rest up to our
Receive Maximum, and nothing is dropped). The consumer takes whole batches. The event
loop is woken only when the consumer is actually waiting, not once per message:
``call_soon_threadsafe`` writes to the loop's self-pipe, which at tens of thousands of
messages a second would cost more than the messages themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

_PUT_POLL_S = 0.5
"""How often a blocked ``put`` rechecks whether the hand-off was closed."""


class Handoff(Generic[T]):
    """A bounded FIFO: one producer thread, one asyncio consumer."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._lock = threading.Condition()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Attach the consumer's event loop (before the producer starts)."""
        self._loop = loop

    def put(self, item: T) -> bool:
        """Append ``item``, waiting for room; False if the hand-off closed meanwhile."""
        with self._lock:
            while len(self._items) >= self.capacity:
                if self._closed:
                    return False
                self._lock.wait(_PUT_POLL_S)
            if self._closed:
                return False
            self._items.append(item)
            self._wake_consumer()
        return True

    def close(self) -> None:
        """Refuse further items; the consumer drains what is left, then gets ``[]``."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            self._wake_consumer()

    async def take(self, max_items: int) -> list[T]:
        """Up to ``max_items`` items, waiting for the first; ``[]`` once closed and empty."""
        while True:
            with self._lock:
                if self._items:
                    n = min(max_items, len(self._items))
                    batch = [self._items.popleft() for _ in range(n)]
                    self._lock.notify_all()
                    return batch
                if self._closed:
                    return []
                waiter = asyncio.get_running_loop().create_future()
                self._waiter = waiter
            await waiter

    def _wake_consumer(self) -> None:
        # Called with the lock held.
        waiter, self._waiter = self._waiter, None
        if waiter is None or self._loop is None:
            return
        # A closed loop means shutdown: nobody is left to wake.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
