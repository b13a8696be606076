"""Folding the stored samples into the hourly rollups, from the store writer's loop.

The ingest stores raw samples only; :func:`~posfleet.store.sample_rollups.fold_samples`
sums them into the rollups later, many reports of a terminal's hour at a time. The
writer (in its process, or inline) calls :meth:`RollupFolding.after_batch` between
batches, which folds once the interval has passed, and :meth:`RollupFolding.fold_now`
when it stops. A fold that fails is logged and tried again at the next interval: the
samples wait behind the watermark, so nothing is lost or counted twice.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.ingest_batch import is_transient
from posfleet.store.sample_rollups import fold_samples

log = logging.getLogger(__name__)

DEFAULT_FOLD_INTERVAL_S = 60.0
"""How long samples wait before they are folded into the hourly rollups, at most."""


class RollupFolding:
    """Folds samples into the rollups at most every ``interval_s`` seconds."""

    def __init__(self, engine: AsyncEngine, interval_s: float = DEFAULT_FOLD_INTERVAL_S) -> None:
        if interval_s <= 0:
            raise ValueError("the fold interval must be positive")
        self.interval_s = interval_s
        self._engine = engine
        self._due = time.monotonic() + interval_s

    async def after_batch(self) -> None:
        """Fold if the interval has passed since the last fold."""
        if time.monotonic() >= self._due:
            await self.fold_now()

    async def fold_now(self) -> int:
        """Fold everything stored so far; how many samples (0 if the fold failed)."""
        self._due = time.monotonic() + self.interval_s
        started = time.perf_counter()
        try:
            count = await fold_samples(self._engine)
        # The samples stay behind the watermark: the next fold takes them.
        except Exception as exc:
            if is_transient(exc):
                log.warning("folding samples into the rollups failed, retrying later: %s", exc)
            else:
                log.exception("folding samples into the rollups failed")
            return 0
        if count:
            log.debug(
                "folded %d samples into the rollups in %.3f s", count, time.perf_counter() - started
            )
        return count
