"""An ingest that the test feeds batches itself, with the store writer production runs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import BrokerConnection, Ingest


@asynccontextmanager
async def brokerless_ingest(engine: AsyncEngine, **options: Any) -> AsyncIterator[Ingest]:
    """An :class:`Ingest` on ``engine`` whose writer runs, but which never connects.

    Batches go in through :meth:`Ingest.process_batch`; the writer is the store writer
    process unless ``writer="inline"`` is passed, and it is stopped (and has folded the
    rollups) when the block ends.
    """
    ingest = Ingest(BrokerConnection(), engine, **options)
    await ingest._writer.start()
    try:
        yield ingest
    finally:
        await ingest._writer.close()
