"""Migration 0005: the registry's copy of the latest health goes, and no terminal loses
its last known health, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import HealthMetrics, Printer, PrinterStatus
from posfleet.store import get_terminal, upgrade_engine

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def metrics(status: PrinterStatus) -> str:
    return HealthMetrics(printer=Printer(status=status)).model_dump_json(exclude_none=True)


async def test_a_pruned_latest_sample_comes_back_from_the_registrys_copy(
    empty_engine: AsyncEngine,
) -> None:
    engine = empty_engine
    await upgrade_engine(engine, "0004_lean_samples")
    terminal = sa.table(
        "terminals",
        *(sa.column(name) for name in ("terminal_id", "first_seen", "last_seen", "health")),
        *(sa.column(name) for name in ("health_seq", "health_at")),
    )
    sample = sa.table(
        "health_samples", *(sa.column(n) for n in ("terminal_id", "seq", "ts", "metrics"))
    )
    json_text = sa.JSON() if engine.dialect.name == "sqlite" else sa.dialects.postgresql.JSONB()
    async with engine.begin() as conn:
        for terminal_id, status in (("T-1", PrinterStatus.NO_PAPER), ("T-2", PrinterStatus.OK)):
            await conn.execute(
                terminal.insert().values(
                    terminal_id=terminal_id,
                    first_seen=sa.literal(T0, sa.DateTime(timezone=True)),
                    last_seen=sa.literal(T0, sa.DateTime(timezone=True)),
                    health=sa.literal(json.loads(metrics(status)), json_text),
                    health_seq=7,
                    health_at=sa.literal(T0, sa.DateTime(timezone=True)),
                )
            )
        # T-2's newest sample is still there; T-1's was pruned under the old rules.
        await conn.execute(
            sample.insert().values(
                terminal_id="T-2",
                seq=7,
                ts=sa.literal(T0, sa.DateTime(timezone=True)),
                metrics=sa.literal(json.loads(metrics(PrinterStatus.OK)), json_text),
            )
        )

    await upgrade_engine(engine)

    async with engine.connect() as conn:
        first, second = await get_terminal(conn, "T-1"), await get_terminal(conn, "T-2")
        samples = (await conn.execute(sa.text("SELECT count(*) FROM health_samples"))).scalar()
        columns = await conn.run_sync(
            lambda c: [col["name"] for col in sa.inspect(c).get_columns("terminals")]
        )
    assert first is not None and first.health is not None
    assert first.health.printer == Printer(status=PrinterStatus.NO_PAPER)
    assert (first.health_seq, first.health_at) == (7, T0)
    assert second is not None and second.health is not None
    assert second.health.printer == Printer(status=PrinterStatus.OK)
    assert samples == 2  # one put back, none doubled
    assert "health" not in columns
