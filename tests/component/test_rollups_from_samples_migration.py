"""Migration 0006: samples stored before it are numbered and never folded a second time,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import HealthMetrics, HealthReport
from posfleet.store import (
    Report,
    fold_samples,
    list_rollups,
    record_reports,
    rollup_watermark,
    upgrade_engine,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_samples_merged_before_the_upgrade_are_not_folded_again(
    empty_engine: AsyncEngine,
) -> None:
    engine = empty_engine
    await upgrade_engine(engine, "0005_health_from_samples")
    # Under 0005 each batch merged its samples into the rollups as it stored them.
    stamp = sa.DateTime(timezone=True)
    json_type = sa.JSON() if engine.dialect.name == "sqlite" else sa.dialects.postgresql.JSONB()
    terminal = sa.table(
        "terminals", *(sa.column(n) for n in ("terminal_id", "first_seen", "last_seen"))
    )
    sample = sa.table(
        "health_samples", *(sa.column(n) for n in ("terminal_id", "seq", "ts", "metrics"))
    )
    rollup = sa.table("health_rollups", *(sa.column(n) for n in ("terminal_id", "hour", "samples")))
    metrics = json.loads(HealthMetrics(temperature_c=30.0).model_dump_json(exclude_none=True))
    async with engine.begin() as conn:
        await conn.execute(
            terminal.insert().values(
                terminal_id="T-1", first_seen=sa.literal(T0, stamp), last_seen=sa.literal(T0, stamp)
            )
        )
        for seq in (1, 2):
            await conn.execute(
                sample.insert().values(
                    terminal_id="T-1",
                    seq=seq,
                    ts=sa.literal(T0 + timedelta(minutes=seq), stamp),
                    metrics=sa.literal(metrics, json_type),
                )
            )
        await conn.execute(
            rollup.insert().values(terminal_id="T-1", hour=sa.literal(T0, stamp), samples=2)
        )

    await upgrade_engine(engine)

    async with engine.connect() as conn:
        numbers = (
            (await conn.execute(sa.text("SELECT stored_id FROM health_samples ORDER BY seq")))
            .scalars()
            .all()
        )
        watermark = await rollup_watermark(conn)
    assert len(set(numbers)) == 2 and watermark == max(numbers)
    assert await fold_samples(engine) == 0

    new = HealthReport(seq=3, ts=T0 + timedelta(minutes=3), interval_s=60, metrics=HealthMetrics())
    async with engine.begin() as conn:
        await record_reports(conn, [Report("T-1", new)], now=T0)
    assert await fold_samples(engine) == 1
    async with engine.connect() as conn:
        rollups = await list_rollups(conn, "T-1", since=T0)
    assert [(r.hour, r.samples) for r in rollups] == [(T0, 3)]
