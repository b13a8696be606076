"""A long-lived loop of the central service as an async context manager.

The action sweeper and the rollout runner each run one named task from entering the
block until leaving it; this is that shared start and stop.
"""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import ClassVar, Self

from posfleet.async_tasks import cancel_and_wait


class BackgroundLoop:
    """Runs :meth:`_run` as one named task while the ``async with`` block lasts."""

    task_name: ClassVar[str] = "background-loop"
    _task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name=self.task_name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(self._task)
        await self._after_stop()

    async def _run(self) -> None:
        """The loop itself; runs until cancelled."""
        raise NotImplementedError

    async def _after_stop(self) -> None:
        """Clean-up once the loop has stopped (nothing by default)."""
