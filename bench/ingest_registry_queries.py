"""Benchmark plumbing: fleet-list query times on a registry of many terminals.

Fills the terminals table directly (SQLite file and, when reachable, PostgreSQL), then
times every kind of page the dashboard asks for and reports the p95 of each.
PostgreSQL: ``POSFLEET_BENCH_PG`` (an asyncpg DSN of a server where we may create a
scratch database), default ``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import os
import random
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.store import (
    TerminalFilter,
    TerminalSort,
    create_engine,
    list_terminals,
    upgrade_engine,
)
from posfleet.store.schema import terminals

REPEATS = 40
_T0 = datetime(2026, 3, 1, tzinfo=UTC)


def _rows(count: int) -> list[dict[str, Any]]:
    rng = random.Random(7)
    rows = []
    for n in range(count):
        seen = _T0 + timedelta(seconds=rng.randrange(86400 * 7))
        rows.append(
            {
                "terminal_id": f"T-{n:06d}",
                "model": f"MODEL-{n % 6}",
                "serial": f"SN{n:08d}",
                "firmware_version": f"5.{n % 9}.0",
                "merchant_id": f"M-{n % 2000:05d}",
                "site_id": f"S-{n % 12000:05d}",
                "online": rng.random() < 0.85,
                "first_seen": _T0,
                "last_seen": seen,
                "seq_gaps": rng.randrange(5),
                "app_versions": {},
                "capabilities": [],
            }
        )
    return rows


async def _fill(engine: AsyncEngine, count: int) -> None:
    await upgrade_engine(engine)
    rows = _rows(count)
    for start in range(0, count, 5000):
        async with engine.begin() as conn:
            await conn.execute(terminals.insert(), rows[start : start + 5000])
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("ANALYZE terminals")
        else:
            await conn.exec_driver_sql("ANALYZE")


def _queries(count: int) -> dict[str, Callable[[AsyncConnection], Awaitable[object]]]:
    middle = f"T-{count // 2:06d}"
    return {
        "first_page": lambda c: list_terminals(c, limit=100),
        "deep_page": lambda c: list_terminals(c, limit=100, after=middle),
        "offline": lambda c: list_terminals(c, online=False, limit=100),
        "model": lambda c: list_terminals(c, where=TerminalFilter(model="MODEL-3"), limit=100),
        "firmware_online": lambda c: list_terminals(
            c, online=True, where=TerminalFilter(firmware_version="5.4.0"), limit=100
        ),
        "merchant": lambda c: list_terminals(
            c, where=TerminalFilter(merchant_id="M-00042"), limit=100
        ),
        "site": lambda c: list_terminals(c, where=TerminalFilter(site_id="S-00042"), limit=100),
        "text_common": lambda c: list_terminals(c, where=TerminalFilter(text="m-0004"), limit=100),
        "text_rare": lambda c: list_terminals(
            c, where=TerminalFilter(text="SN00012345"), limit=100
        ),
        "last_seen_desc": lambda c: list_terminals(c, sort=TerminalSort.LAST_SEEN_DESC, limit=100),
        "last_seen_desc_next": lambda c: list_terminals(
            c, sort=TerminalSort.LAST_SEEN_DESC, after=middle, limit=100
        ),
    }


async def _time_queries(engine: AsyncEngine, count: int) -> dict[str, float]:
    result: dict[str, float] = {}
    async with engine.connect() as conn:
        for name, query in _queries(count).items():
            await query(conn)  # warm the statement cache and the pages
            times = []
            for _ in range(REPEATS):
                started = time.perf_counter()
                await query(conn)
                times.append((time.perf_counter() - started) * 1000)
            result[name] = round(statistics.quantiles(times, n=20)[18], 2)
    return result


async def _on_sqlite(work: Path, count: int) -> dict[str, float]:
    engine = create_engine(f"sqlite+aiosqlite:///{work / 'registry.db'}")
    try:
        await _fill(engine, count)
        return await _time_queries(engine, count)
    finally:
        await engine.dispose()


async def _on_postgres(count: int) -> dict[str, float] | str:
    dsn = os.environ.get("POSFLEET_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"posfleet_bench_{uuid.uuid4().hex[:8]}"
    try:
        admin = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        return f"unavailable: {exc}"
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        engine = create_engine(f"{base}/{name}")
        try:
            await _fill(engine, count)
            return await _time_queries(engine, count)
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def registry_query_p95(work: Path, count: int) -> dict[str, Any]:
    """p95 in ms of each fleet-list query at ``count`` terminals, per backend."""
    sqlite = await _on_sqlite(work, count)
    postgres = await _on_postgres(count)
    print(f"registry at {count:,} terminals, p95 ms: sqlite {sqlite}; postgresql {postgres}")
    return {"terminals": count, "sqlite": sqlite, "postgresql": postgres}
