"""Benchmark: the support console's pages at fleet scale, on SQLite and PostgreSQL.

Seeds 100,000 terminals (one merchant per 20), 1,000,000 stored health samples, 7 days of
hourly rollups for the terminals whose pages are opened, and 100,000 incidents (see
bench/dashboard_seed.py); then, through the real dashboard app over HTTP, logged in as
a viewer, times each request kind and reports its p95 in milliseconds:

- ``list_first``, ``list_deep`` (a cursor half-way through), ``list_filtered`` (model
  and offline), ``list_faulty`` (terminals with an open incident): the fleet list ``/``;
- ``search_merchant``: ``/search?q=`` with a part of a merchant's name (Latin, Chinese);
  ``search_api``: the same through ``/api/v1/search``;
- ``terminal_page``: ``/terminals/{id}`` with its 7-day charts;
- ``incidents_list``: ``/incidents``;
- ``overview`` (``/overview``, 7 and 30 days), ``overview_fragment`` (its live section),
  ``overview_api`` (``/api/v1/overview``): served from the per-instance snapshot, which
  is recounted in the background every few seconds while the requests run;
- ``overview_count``: the recount itself (every figure, straight from the database),
  what a page view would cost without the snapshot.

Goal: every p95 under 100 ms. PostgreSQL: ``POSFLEET_BENCH_PG`` (an asyncpg DSN of a
server where we may create a scratch database); without it a private throw-away cluster
is started from the Debian package's binaries. The last line is one JSON object.

    .venv/bin/python -m bench.dashboard [--terminals 100000] [--samples 1000000]
        [--incidents 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.dashboard_seed import Fleet, seed, terminal_id
from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.gc_tuning import tune_gc
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.accounts import Role, create_api_token, create_user
from posfleet.store.fleet_overview import fleet_overview

GOAL_MS = 100.0
PASSWORD = "dashboard-measure-7Q"
SECRET = bytes(range(32))


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _requests(fleet: Fleet) -> dict[str, list[str]]:
    """Each measured kind and the paths it cycles through."""
    middle = terminal_id(fleet.terminals // 2)
    return {
        "list_first": ["/"],
        "list_deep": [f"/?after={middle}", f"/?after={terminal_id(fleet.terminals - 500)}"],
        "list_filtered": ["/?model=A920&online=false", "/?firmware=5.4.0&online=true"],
        "list_faulty": ["/?faulty=true"],
        "search_merchant": [f"/search?q={part}" for part in fleet.merchant_parts],
        "search_api": [f"/api/v1/search?q={part}" for part in fleet.merchant_parts],
        "terminal_page": [f"/terminals/{tid}" for tid in fleet.charted[:20]],
        "incidents_list": ["/incidents"],
        "overview": ["/overview", "/overview?days=30"],
        "overview_fragment": ["/fragments/overview"],
        "overview_api": ["/api/v1/overview"],
    }


async def _login(client: TestClient[Any, Any]) -> None:
    page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    if token is None:
        raise RuntimeError("the login page has no CSRF token")
    form = {"csrf_token": token.group(1), "username": "bench", "password": PASSWORD}
    response = await client.post("/login", data=form, allow_redirects=False)
    if response.status != 303:
        raise RuntimeError(f"login failed: {response.status}")


async def _measure(engine: AsyncEngine, fleet: Fleet, repeats: int) -> dict[str, Any]:
    # As `posfleet serve` starts (central/service.py): without it the collector's full
    # passes over the heap of the seeding put a 100 ms pause into every few dozen pages.
    tune_gc()
    app = create_app(engine, session_secret=SECRET)
    result: dict[str, Any] = {}
    async with engine.begin() as conn:
        token = await create_api_token(conn, "bench", Role.VIEWER)
    # Pages take the session cookie, the API a bearer token.
    bearer = {"Authorization": f"Bearer {token}"}
    async with TestClient(TestServer(app)) as client:
        await _login(client)
        for kind, paths in _requests(fleet).items():
            times: list[float] = []
            failed = ""
            headers = bearer if kind.endswith("_api") else {}
            for path in paths:  # warm the statement caches and the pages
                response = await client.get(path, headers=headers)
                if response.status != 200:
                    failed = f"{path}: HTTP {response.status}"
                await response.read()
            for n in range(repeats):
                path = paths[n % len(paths)]
                started = time.perf_counter()
                response = await client.get(path, headers=headers)
                await response.read()
                times.append((time.perf_counter() - started) * 1000)
            result[kind] = failed or round(statistics.quantiles(times, n=20)[18], 1)
    result["overview_count"] = await _measure_count(engine, repeats)
    return result


async def _measure_count(engine: AsyncEngine, repeats: int) -> float:
    """The overview's recount on its own: what the snapshot saves each page view."""
    times: list[float] = []
    async with engine.connect() as conn:
        await fleet_overview(conn, utcnow())  # warm the statement cache
        for _ in range(max(2, repeats // 2)):
            started = time.perf_counter()
            await fleet_overview(conn, utcnow())
            times.append((time.perf_counter() - started) * 1000)
    return round(statistics.quantiles(times, n=20)[18], 1)


async def _run(engine: AsyncEngine, args: argparse.Namespace, label: str) -> dict[str, Any]:
    started = time.perf_counter()
    await upgrade_engine(engine)
    async with engine.begin() as conn:
        await create_user(conn, "bench", PASSWORD, Role.VIEWER)
    fleet = await seed(engine, args.terminals, args.samples, args.incidents)
    _say(f"{label}: seeded {fleet.terminals:,} terminals, {fleet.samples:,} samples "
         f"in {time.perf_counter() - started:.0f} s")  # fmt: skip
    p95 = await _measure(engine, fleet, args.repeats)
    _say(f"{label}: p95 ms {p95}")
    return p95


async def _on_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="posfleet-bench-dashboard-") as work:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(work) / 'central.db'}")
        try:
            return await _run(engine, args, "sqlite")
        finally:
            await engine.dispose()


@asynccontextmanager
async def _postgres_dsn() -> AsyncIterator[str]:
    """The server to use: ``POSFLEET_BENCH_PG``, or a private cluster for this run."""
    if dsn := os.environ.get("POSFLEET_BENCH_PG"):
        yield dsn
        return
    from tests.harness.private_postgres import PrivatePostgres

    server = PrivatePostgres()
    await asyncio.to_thread(server.start)  # it runs its own event loop to check the server
    try:
        yield server.url("postgres")
    finally:
        await asyncio.to_thread(server.stop)


async def _on_postgres(args: argparse.Namespace) -> dict[str, Any] | str:
    async with _postgres_dsn() as server:
        dsn = server.replace("postgresql+asyncpg://", "postgresql://", 1)
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
                return await _run(engine, args, "postgresql")
            finally:
                await engine.dispose()
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


def _verdict(p95: dict[str, Any] | str) -> bool:
    return isinstance(p95, dict) and all(isinstance(v, float) and v < GOAL_MS for v in p95.values())


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    """Both backends, one after the other; the summary the last line prints."""
    sqlite = await _on_sqlite(args) if "sqlite" in args.backends else "skipped"
    postgres = await _on_postgres(args) if "postgresql" in args.backends else "skipped"
    return {
        "bench": "dashboard",
        "terminals": args.terminals,
        "samples": args.samples,
        "incidents": args.incidents,
        "goal_p95_ms": GOAL_MS,
        "sqlite": sqlite,
        "postgresql": postgres,
        "meets_goal": {"sqlite": _verdict(sqlite), "postgresql": _verdict(postgres)},
    }


def main() -> None:
    """Parse the options, run, print one JSON object on the last line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=40, help="requests per kind (40)")
    parser.add_argument(
        "--backends", default="sqlite,postgresql", help="comma-separated (sqlite,postgresql)"
    )
    args = parser.parse_args()
    args.backends = set(args.backends.split(","))
    print(json.dumps(asyncio.run(main_async(args)), ensure_ascii=False))


if __name__ == "__main__":
    main()
