"""Housekeeping folds samples into the rollups when no ingest batch comes to do it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.housekeeping import Housekeeping, HousekeepingSchedule
from posfleet.contract import HealthMetrics, HealthReport
from posfleet.store import Report, list_rollups, record_reports
from tests.harness import async_wait_for

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def test_reports_reach_the_rollups_while_the_ingest_is_idle(engine: AsyncEngine) -> None:
    reports = [
        Report(
            "H-1",
            HealthReport(
                seq=s,
                ts=T0 + timedelta(minutes=s),
                interval_s=60,
                metrics=HealthMetrics(temperature_c=20.0 + s),
            ),
        )
        for s in (1, 2, 3)
    ]
    async with engine.begin() as conn:
        await record_reports(conn, reports, now=T0)
    schedule = HousekeepingSchedule(fold_interval=timedelta(milliseconds=50))

    async def rollups() -> list[tuple[datetime, int, float | None]]:
        async with engine.connect() as conn:
            found = await list_rollups(conn, "H-1", since=T0)
        return [(r.hour, r.samples, r.temperature_max) for r in found]

    async with Housekeeping(engine, schedule) as housekeeping:
        await async_wait_for(rollups, timeout=10, description="the reports in the rollups")
        assert await rollups() == [(T0, 3, 23.0)]
        await async_wait_for(lambda: housekeeping.stats.samples_folded == 3, timeout=10)
