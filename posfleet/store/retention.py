"""Pruning telemetry past its retention window, in small transactions.

Raw health samples are kept for days, hourly rollups for about a year (both set by the
central settings); each terminal's newest sample is kept for as long as the terminal is,
as it is the latest health the registry shows, and no sample goes before it is folded
into the rollups. Rows are deleted in chunks so that a
large backlog never holds one long write transaction against the ingest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store.sample_rollups import ROLLUPS_WATERMARK, fold_samples
from posfleet.store.schema import health_rollups, health_samples, rollup_progress, terminals

DEFAULT_RAW_RETENTION = timedelta(days=7)
DEFAULT_ROLLUP_RETENTION = timedelta(days=400)
PRUNE_CHUNK_ROWS = 5000


@dataclass(frozen=True, slots=True)
class PruneResult:
    """How many rows one pruning pass deleted."""

    samples: int
    rollups: int


async def _delete_older(
    engine: AsyncEngine, table: sa.Table, ts: sa.Column[datetime], cutoff: datetime
) -> int:
    key = sa.tuple_(table.c.terminal_id, table.c[_second_key(table)])
    deleted = 0
    while True:
        chunk = (
            sa.select(table.c.terminal_id, table.c[_second_key(table)])
            .where(ts < cutoff, *_kept(table))
            .limit(PRUNE_CHUNK_ROWS)
        )
        async with engine.begin() as conn:
            result = await conn.execute(sa.delete(table).where(key.in_(chunk)))
        deleted += result.rowcount
        if result.rowcount < PRUNE_CHUNK_ROWS:
            return deleted


def _kept(table: sa.Table) -> list[sa.ColumnElement[bool]]:
    """Rows kept whatever their age: each terminal's newest health sample, which the
    registry shows as its latest health however long the terminal has been silent, and
    any sample not yet folded into the hourly rollups."""
    if table is not health_samples:
        return []
    latest = sa.select(terminals.c.terminal_id).where(
        terminals.c.terminal_id == health_samples.c.terminal_id,
        terminals.c.health_seq == health_samples.c.seq,
    )
    folded = (
        sa.select(rollup_progress.c.stored_id)
        .where(rollup_progress.c.name == ROLLUPS_WATERMARK)
        .scalar_subquery()
    )
    return [~latest.exists(), health_samples.c.stored_id <= folded]


def _second_key(table: sa.Table) -> str:
    return "seq" if table is health_samples else "hour"


async def prune_telemetry(
    engine: AsyncEngine,
    *,
    now: datetime,
    raw_retention: timedelta = DEFAULT_RAW_RETENTION,
    rollup_retention: timedelta = DEFAULT_ROLLUP_RETENTION,
) -> PruneResult:
    """Delete raw samples older than ``raw_retention`` and rollups older than theirs.

    Samples are folded into the rollups first, so that none is pruned uncounted.
    """
    await fold_samples(engine)
    samples = await _delete_older(engine, health_samples, health_samples.c.ts, now - raw_retention)
    rollups = await _delete_older(
        engine, health_rollups, health_rollups.c.hour, now - rollup_retention
    )
    return PruneResult(samples, rollups)
