"""The overview's figures, kept a few seconds per dashboard instance.

Counting the fleet costs tens of milliseconds at 100,000 terminals (more with tens of
thousands of open incidents), and every open overview and wallboard asks again every
few seconds. So each instance keeps the last snapshot: within ``fresh_for`` seconds it
is served as it is; after that, up to ``stale_for``, it is still served while one
recount runs in the background (so no page view waits for the count); past
``stale_for`` a request waits for the recount. However many people watch, an instance
counts at most once per ``fresh_for`` and never twice at once (see docs/overview.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

FRESH_SECONDS = 3.0
"""Served without a recount: below the pages' refresh interval, so each refresh of a
page that is watched alone starts a recount."""
STALE_SECONDS = 30.0
"""Served while a recount runs; older than this, a request waits for the new figures."""


def _read_outcome(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()


class SnapshotCache(Generic[T]):
    """One value from ``load``, refreshed as described in the module's docstring.

    ``fresh_for=0`` and ``stale_for=0`` load on every call (what tests that change the
    data between two requests use). ``clock`` is in seconds, monotonic.
    """

    def __init__(
        self,
        load: Callable[[], Awaitable[T]],
        *,
        fresh_for: float = FRESH_SECONDS,
        stale_for: float = STALE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= fresh_for <= stale_for:
            raise ValueError("need 0 <= fresh_for <= stale_for")
        self._load = load
        self._fresh_for = fresh_for
        self._stale_for = stale_for
        self._clock = clock
        self._value: T | None = None
        self._loaded_at = 0.0
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        """The snapshot, recounted when it is older than ``fresh_for``."""
        age = self._clock() - self._loaded_at
        if self._value is not None and age < self._fresh_for:
            return self._value
        task = self._recount()
        if self._value is not None and age < self._stale_for:
            return self._value
        # shield: a client that goes away must not cancel the count others wait for.
        return await asyncio.shield(task)

    def _recount(self) -> asyncio.Task[T]:
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._load_and_keep(), name="overview-recount")
            # A background recount nobody awaits has its error logged, not left unread.
            self._running.add_done_callback(_read_outcome)
        return self._running

    async def _load_and_keep(self) -> T:
        started = self._clock()
        try:
            value = await self._load()
        except Exception:
            # Whoever waits gets the error; a page served stale keeps the old figures.
            log.exception("counting the fleet overview failed")
            raise
        self._value, self._loaded_at = value, started
        return value

    async def close(self) -> None:
        """Cancel a recount still running (the app is shutting down)."""
        if self._running is not None and not self._running.done():
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._running
