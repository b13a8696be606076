"""A long-lived loop of the central service as an async context manager.

The action sweeper and the rollout runner each run one named task from entering the
block until leaving it; this is that shared start and stop. Leaving the block asks the
loop to stop and wakes it: a round under way finishes (its transactions end the normal
way, which matters on SQLite, where a round cancelled inside a write transaction could
keep the write lock), and the task is cancelled only if it does not end within
:data:`STOP_GRACE_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import ClassVar, Self

from posfleet.async_tasks import cancel_and_wait

STOP_GRACE_S = 10.0
"""How long leaving the block waits for the round under way before cancelling it."""


class BackgroundLoop:
    """Runs :meth:`_run` as one named task while the ``async with`` block lasts.

    ``_run`` loops ``while not self.stopping`` and sleeps with :meth:`_nap`, which a stop
    request cuts short.
    """

    task_name: ClassVar[str] = "background-loop"
    _task: asyncio.Task[None] | None = None
    _stop_requested: asyncio.Event | None = None

    @property
    def stopping(self) -> bool:
        """True once leaving the block has asked the loop to stop."""
        return self._stop_requested is not None and self._stop_requested.is_set()

    async def __aenter__(self) -> Self:
        self._stop_requested = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=self.task_name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._stop_requested is not None:
            self._stop_requested.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_GRACE_S):
                    await asyncio.wait({self._task})
            await cancel_and_wait(self._task)
        await self._after_stop()

    async def _nap(self, seconds: float, *wake: asyncio.Event) -> None:
        """Sleep ``seconds``, or less if one of ``wake`` is set or the loop is to stop."""
        assert self._stop_requested is not None
        waiters = [asyncio.create_task(e.wait()) for e in (self._stop_requested, *wake)]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(*waiters)

    async def _run(self) -> None:
        """The loop itself; runs until :attr:`stopping` (or cancelled)."""
        raise NotImplementedError

    async def _after_stop(self) -> None:
        """Clean-up once the loop has stopped (nothing by default)."""
