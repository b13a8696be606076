"""Telemetry and the fleet registry at scale, on SQLite and on a real PostgreSQL.

Hourly rollups, retention, the heartbeat sweep, and the fleet list's filters, sort
orders and keyset pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Battery,
    HealthMetrics,
    HealthReport,
    Inventory,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    State,
)
from posfleet.store import (
    Report,
    TerminalFilter,
    TerminalSort,
    apply_inventory,
    apply_state,
    fold_samples,
    get_terminal,
    list_rollups,
    list_terminals,
    mark_silent_terminals_offline,
    prune_telemetry,
    record_reports,
)
from posfleet.store.schema import health_samples

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def report(
    seq: int,
    ts: datetime,
    *,
    temperature: float = 30.0,
    battery: float = 80.0,
    printer: PrinterStatus = PrinterStatus.OK,
    host_up: bool = True,
) -> HealthReport:
    metrics = HealthMetrics(
        temperature_c=temperature,
        battery=Battery(percent=battery, charging=False),
        printer=Printer(status=printer),
        network=Network(type=NetworkType.WIFI, rssi_dbm=-60 - seq, host_reachable=host_up),
    )
    return HealthReport(seq=seq, ts=ts, interval_s=60, metrics=metrics)


async def test_hourly_rollups_count_each_report_once(engine: AsyncEngine) -> None:
    first_hour = [
        report(1, T0 + timedelta(minutes=5), temperature=30, battery=80),
        report(2, T0 + timedelta(minutes=35), temperature=40, battery=20, host_up=False),
    ]
    second_hour = [report(3, T0 + timedelta(minutes=65), printer=PrinterStatus.JAM)]
    async with engine.begin() as conn:
        await record_reports(conn, [Report("T-1", r) for r in first_hour], now=T0)
    assert await fold_samples(engine) == 2
    async with engine.begin() as conn:
        # A redelivered report in the next batch must not be counted again.
        batch = [Report("T-1", r) for r in [first_hour[1], *second_hour]]
        assert await record_reports(conn, batch, now=T0) == [False, True]
    assert await fold_samples(engine) == 1
    assert await fold_samples(engine) == 0  # nothing new: nothing counted twice
    async with engine.connect() as conn:
        rollups = await list_rollups(conn, "T-1", since=T0 - timedelta(hours=1))

    assert [r.hour for r in rollups] == [T0, T0 + timedelta(hours=1)]
    first, second = rollups
    assert first.samples == 2
    assert first.temperature_avg == pytest.approx(35.0)
    assert (first.temperature_max, first.battery_min) == (40.0, 20.0)
    assert (first.host_unreachable, first.printer_faults, first.rssi_min) == (1, 0, -62)
    assert (second.samples, second.printer_faults) == (1, 1)


async def test_pruning_drops_raw_samples_before_their_rollups(engine: AsyncEngine) -> None:
    now = T0 + timedelta(days=30)
    async with engine.begin() as conn:
        old = [Report("T-1", report(s, T0 + timedelta(minutes=s))) for s in range(1, 4)]
        recent = [Report("T-1", report(10, now - timedelta(hours=1)))]
        await record_reports(conn, old + recent, now=now)

    result = await prune_telemetry(
        engine, now=now, raw_retention=timedelta(days=7), rollup_retention=timedelta(days=400)
    )
    assert (result.samples, result.rollups) == (3, 0)
    async with engine.connect() as conn:
        left = (await conn.execute(sa.select(health_samples.c.seq))).scalars().all()
        rollups = await list_rollups(conn, "T-1", since=T0 - timedelta(days=1))
    assert left == [10]
    assert sum(r.samples for r in rollups) == 4  # the charts still cover the old days

    result = await prune_telemetry(
        engine, now=now, raw_retention=timedelta(days=7), rollup_retention=timedelta(days=10)
    )
    assert result.rollups == 1


async def test_pruning_keeps_a_silent_terminals_latest_health(engine: AsyncEngine) -> None:
    now = T0 + timedelta(days=30)
    async with engine.begin() as conn:
        # T-1 went quiet a month ago; T-2 still reports.
        silent = [
            Report("T-1", report(s, T0 + timedelta(minutes=s), temperature=20 + s))
            for s in (1, 2, 3)
        ]
        active = [
            Report("T-2", report(1, T0)),
            Report("T-2", report(2, now - timedelta(hours=1))),
        ]
        await record_reports(conn, silent + active, now=now)

    result = await prune_telemetry(engine, now=now, raw_retention=timedelta(days=7))

    assert result.samples == 3  # T-1's seq 1 and 2, T-2's seq 1
    async with engine.connect() as conn:
        left = (
            await conn.execute(
                sa.select(health_samples.c.terminal_id, health_samples.c.seq).order_by(
                    health_samples.c.terminal_id
                )
            )
        ).all()
        quiet = await get_terminal(conn, "T-1")
    assert [tuple(row) for row in left] == [("T-1", 3), ("T-2", 2)]
    # The registry still shows the last health T-1 ever reported.
    assert quiet is not None and quiet.health is not None
    assert (quiet.health_seq, quiet.health.temperature_c) == (3, 23.0)


async def test_a_silent_terminal_goes_offline_and_comes_back_when_it_reports(
    engine: AsyncEngine,
) -> None:
    birth = State(online=True, agent_version="1.4.0", boot_id="b1", ts=T0)
    async with engine.begin() as conn:
        await apply_state(conn, "T-quiet", birth, now=T0)
        await apply_state(conn, "T-busy", birth, now=T0)
        await record_reports(conn, [Report("T-quiet", report(1, T0))], now=T0)
        later = T0 + timedelta(seconds=100)
        await record_reports(conn, [Report("T-busy", report(1, later))], now=later)

    # Both report every 60 s: at T0 + 150 s only T-quiet has missed two reports.
    async with engine.begin() as conn:
        marked = await mark_silent_terminals_offline(conn, now=T0 + timedelta(seconds=150))
    assert marked == ["T-quiet"]
    async with engine.connect() as conn:
        quiet = await get_terminal(conn, "T-quiet")
    assert quiet is not None
    assert (quiet.online, quiet.offline_reason) == (False, "heartbeat")

    back = T0 + timedelta(seconds=400)
    async with engine.begin() as conn:
        await record_reports(conn, [Report("T-quiet", report(2, back))], now=back)
        quiet = await get_terminal(conn, "T-quiet")
    assert quiet is not None
    assert (quiet.online, quiet.offline_reason, quiet.state_changed_at) == (True, None, back)


async def test_an_lwt_offline_terminal_is_not_revived_by_a_late_report(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as conn:
        await apply_state(
            conn, "T-1", State(online=False, agent_version="1", boot_id="b", ts=T0), now=T0
        )
        await record_reports(conn, [Report("T-1", report(1, T0))], now=T0)
        record = await get_terminal(conn, "T-1")
    assert record is not None
    assert (record.online, record.offline_reason) == (False, "lwt")


def inventory(n: int) -> Inventory:
    return Inventory(
        model="V400m" if n % 2 else "Move5000",
        serial=f"SN-{n:04d}",
        firmware_version="5.2.1" if n % 3 else "5.3.0",
        agent_version="1.4.0",
        merchant_id=f"Baeckerei-{n % 4}",
        site_id=f"S-{n % 5}",
        ts=T0,
    )


async def test_fleet_list_filters_sorts_and_pages(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for n in range(1, 31):
            terminal_id = f"T-{n:03d}"
            await apply_inventory(conn, terminal_id, inventory(n), now=T0)
            seen = T0 + timedelta(minutes=(n * 7) % 30)
            await record_reports(conn, [Report(terminal_id, report(1, seen))], now=seen)

    async with engine.connect() as conn:
        v400 = await list_terminals(conn, where=TerminalFilter(model="V400m"), limit=100)
        combo = TerminalFilter(firmware_version="5.3.0", merchant_id="Baeckerei-1", site_id="S-4")
        narrow = await list_terminals(conn, where=combo, limit=100)
        text = await list_terminals(conn, where=TerminalFilter(text="baeckerei-3"), limit=100)
        by_serial = await list_terminals(conn, where=TerminalFilter(text="sn-0017"), limit=100)
        underscore = await list_terminals(conn, where=TerminalFilter(text="_"), limit=100)

        pages: list[str] = []
        after: str | None = None
        while page := await list_terminals(
            conn, sort=TerminalSort.LAST_SEEN_DESC, limit=7, after=after
        ):
            pages += [r.terminal_id for r in page]
            after = page[-1].terminal_id
        everyone = await list_terminals(conn, limit=100)

    assert [r.terminal_id for r in v400] == [f"T-{n:03d}" for n in range(1, 31, 2)]
    assert [r.terminal_id for r in narrow] == ["T-009"]
    assert {r.merchant_id for r in text} == {"Baeckerei-3"}
    assert len(text) == 7
    assert [r.terminal_id for r in by_serial] == ["T-017"]
    assert underscore == []  # LIKE wildcards in the search text are matched literally
    by_recency = sorted(everyone, key=lambda r: (r.last_seen, r.terminal_id), reverse=True)
    assert pages == [r.terminal_id for r in by_recency]
