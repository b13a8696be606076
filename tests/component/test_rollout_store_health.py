"""The health gate's figures from real stored samples, on SQLite and PostgreSQL: each
updated terminal against its own baseline, counters that restart, reboots, and
terminals without enough samples left out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    CardReader,
    HealthMetrics,
    HealthReport,
    ReaderCounters,
    Transactions,
)
from posfleet.firmware.rollout_gate import evaluate
from posfleet.firmware.rollout_health import UpdatedTerminal, wave_health
from posfleet.firmware.rollout_model import GateTolerances
from posfleet.store import apply_health, write_transaction
from tests.component.firmware_rows import T0, add_terminal

MINUTE = timedelta(minutes=1)


def report(
    seq: int,
    at: datetime,
    *,
    reads: int,
    errors: int,
    approved: int = 0,
    declined: int = 0,
    uptime_s: int | None = None,
) -> HealthReport:
    """A report with cumulative chip counters (and contactless reads without errors)."""
    return HealthReport(
        seq=seq,
        ts=at,
        interval_s=60,
        metrics=HealthMetrics(
            card_reader=CardReader(
                chip=ReaderCounters(reads=reads, errors=errors),
                contactless=ReaderCounters(reads=reads, errors=0),
            ),
            transactions=Transactions(approved=approved, declined=declined),
            uptime_s=uptime_s,
        ),
    )


async def store(engine: AsyncEngine, terminal_id: str, reports: list[HealthReport]) -> None:
    async with write_transaction(engine) as conn:
        for one in reports:
            await apply_health(conn, terminal_id, one, now=one.ts)


async def test_each_terminal_is_measured_against_its_own_baseline(engine: AsyncEngine) -> None:
    began, done, until = T0, T0 + 10 * MINUTE, T0 + 40 * MINUTE
    for tid in ("T-1", "T-2", "T-NEW"):
        await add_terminal(engine, tid)
    # T-1: 10 reads a minute (x2 interfaces), 1 chip error a minute before; after its
    # update the chip fails 5 times a minute, and payments are declined more.
    before = [
        report(i, began - 30 * MINUTE + i * MINUTE, reads=10 * i, errors=i, approved=9 * i,
               declined=i, uptime_s=3600 + 60 * i)
        for i in range(30)
    ]  # fmt: skip
    after = [
        report(100 + i, done + (i + 1) * MINUTE, reads=10 * i, errors=5 * i, approved=5 * i,
               declined=5 * i, uptime_s=60 * i)
        for i in range(30)
    ]  # fmt: skip
    await store(engine, "T-1", before + after)
    # T-2: healthy both times, but its counters restart once after the update (a reboot:
    # uptime drops), and the chip counter of the restart is counted from zero.
    steady = [
        report(i, began - 30 * MINUTE + i * MINUTE, reads=10 * i, errors=0, uptime_s=60 * i)
        for i in range(30)
    ]
    later = [
        report(100 + i, done + (i + 1) * MINUTE, reads=10 * (i % 15), errors=0,
               uptime_s=60 * (i % 15))
        for i in range(30)
    ]  # fmt: skip
    await store(engine, "T-2", steady + later)
    # T-NEW: no samples before its update (a terminal that just joined): left out.
    await store(engine, "T-NEW", after)

    updated = [UpdatedTerminal(t, began, done) for t in ("T-1", "T-2", "T-NEW")]
    async with engine.connect() as conn:
        health = await wave_health(conn, updated, until=until)

    assert health.without_figures == ("T-NEW",)
    by_id = {t.terminal_id: t for t in health.terminals}
    one = by_id["T-1"]
    # Windows of 30 minutes each; the first sample of a window is its anchor.
    assert (one.before.reads, one.before.read_errors) == (29 * 20, 29)
    assert (one.after.reads, one.after.read_errors) == (29 * 20, 29 * 5)
    assert (one.before.approved, one.before.declined) == (29 * 9, 29)
    assert (one.after.approved, one.after.declined) == (29 * 5, 29 * 5)
    assert one.before.reboots == one.after.reboots == 0
    two = by_id["T-2"]
    # 14 rises of 20 reads, the restart (reads 0 again: counted as 0), 14 more rises.
    assert two.after.reads == 28 * 20 and two.after.reboots == 1
    assert two.before.reboots == 0

    assert health.after.terminals == health.before.terminals == 2
    assert health.after.reads == one.after.reads + two.after.reads
    verdict = evaluate(health.before, health.after, GateTolerances())
    assert not verdict.passed
    assert any("card-reader errors" in r for r in verdict.reasons)
    assert any("declines" in r for r in verdict.reasons)
    # Alone, T-1 fails on its errors and declines, T-2 on its reboot (1 > 0.5 a terminal).
    assert not one.verdict(GateTolerances()).passed
    assert [r for r in two.verdict(GateTolerances()).reasons if "reboots" in r]


async def test_a_terminal_confirmed_after_the_soak_end_has_no_figures(
    engine: AsyncEngine,
) -> None:
    await add_terminal(engine, "T-LATE")
    updated = [UpdatedTerminal("T-LATE", T0, T0 + 50 * MINUTE)]
    async with engine.connect() as conn:
        health = await wave_health(conn, updated, until=T0 + 40 * MINUTE)
    assert health.terminals == () and health.without_figures == ("T-LATE",)
    assert health.after.terminals == 0
    assert not evaluate(health.before, health.after, GateTolerances()).passed
