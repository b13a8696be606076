"""Rollout planning benchmark: the pure planner and preview on a synthetic fleet.

A fleet of ``--terminals`` candidates (100,000 by default) in shops of one to eight
tills, thirty time zones, a few models and firmware versions, some offline for weeks,
some busy. Timed, each ``--runs`` times after one warm-up:

- ``plan``: :func:`posfleet.firmware.rollout_planner.plan` (exclusions, wave sizes,
  seeded site-spread assignment);
- ``preview``: :func:`~posfleet.firmware.rollout_planner.preview` and ``summarize``
  (rate limit, wave estimates, each terminal's window in its own zone);
- ``preview_call``: both together, which is what a dry-run preview computes on top of
  the query that loads the candidates;
- ``store``: the store-backed preview as staff call it,
  :func:`posfleet.firmware.rollouts.preview_rollout` on a SQLite file holding the same
  fleet in its ``terminals`` table (the candidate query, the open-Action check, the
  plan and the preview), and the candidate query alone (``load_candidates``).

Reported: the median and p95 of each in seconds, and the planner's cost per terminal in
microseconds (median plan time / terminals), at 10 % of the fleet too, so the scaling
shows. Goal: ``preview_call`` p95 under 2 s at 100,000 terminals.

    .venv/bin/python -m bench.rollout_plan [--terminals 100000] [--runs 10] [--quick]
                                           [--no-store]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import random
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from posfleet.contract import FirmwareManifest
from posfleet.firmware.artifacts import get_artifact
from posfleet.firmware.rollout_model import Candidate, Plan, RolloutPolicy, TargetFilter
from posfleet.firmware.rollout_planner import plan, preview, summarize
from posfleet.firmware.rollout_queries import load_candidates
from posfleet.firmware.rollouts import create_rollout, preview_rollout
from posfleet.firmware.signing import generate_private_key, sign_manifest
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.schema import firmware_artifacts, terminals

NOW = datetime(2026, 3, 27, 9, 30, tzinfo=UTC)  # a Friday before Europe's DST change
MANIFEST = FirmwareManifest(
    name="pos-os",
    version="5.3.0",
    sha256=hashlib.sha256(b"pos-os 5.3.0").hexdigest(),
    size=32 << 20,
    models=["V400m", "P630", "A920"],
    min_version="5.0.0",
)
ZONES = (
    "Europe/Berlin",
    "Europe/London",
    "Europe/Paris",
    "Europe/Madrid",
    "Europe/Rome",
    "Europe/Warsaw",
    "Europe/Helsinki",
    "Europe/Lisbon",
    "Europe/Athens",
    "Europe/Dublin",
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Sao_Paulo",
    "America/Mexico_City",
    "America/Toronto",
    "America/Halifax",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Asia/Kolkata",
    "Asia/Singapore",
    "Asia/Dubai",
    "Asia/Kathmandu",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Africa/Johannesburg",
    "UTC",
)
MODELS = ("V400m",) * 6 + ("P630",) * 3 + ("A920", "PF-M100")
VERSIONS = ("5.2.0",) * 12 + ("5.1.4",) * 5 + ("5.3.0", "4.9.2", "5.4.0-rc.1")
TARGET = TargetFilter(models=("V400m", "P630", "A920"), firmware_versions=VERSIONS)
"""The filter a release would use: the models it is built for, the versions in the field."""


def synthetic_fleet(n: int, seed: int = 12) -> list[Candidate]:
    """``n`` candidates in shops of 1..8 tills; shops sit in one zone and one merchant."""
    rng = random.Random(seed)
    fleet: list[Candidate] = []
    shop = 0
    while len(fleet) < n:
        size = min(rng.choice((1, 1, 2, 2, 2, 3, 3, 4, 5, 8)), n - len(fleet))
        zone = rng.choice(ZONES)
        merchant = f"M-{shop % 900:03d}"
        for till in range(size):
            offline = rng.random() < 0.03
            fleet.append(
                Candidate(
                    terminal_id=f"T-{shop:06d}-{till}",
                    model=rng.choice(MODELS),
                    merchant_id=merchant,
                    site_id=f"S-{shop:06d}",
                    tags=("pilot",) if rng.random() < 0.02 else (),
                    firmware_version=rng.choice(VERSIONS),
                    timezone=zone,
                    online=not offline,
                    last_seen=NOW - timedelta(days=rng.choice((0, 1, 3, 9, 30)))
                    if offline
                    else NOW,
                    has_open_action=rng.random() < 0.01,
                )
            )
        shop += 1
    return fleet


def _timed(fn: Callable[[], Any], runs: int) -> tuple[list[float], Any]:
    result = fn()  # warm-up (and the result to report on)
    times: list[float] = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times, result


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(n: int, runs: int, policy: RolloutPolicy) -> dict[str, Any]:
    """Plan, preview and both, ``runs`` times each, on a fleet of ``n``."""
    fleet = synthetic_fleet(n)

    def do_plan() -> Plan:
        return plan(fleet, MANIFEST, policy, now=NOW, seed="rollout-42", target=TARGET)

    plan_times, the_plan = _timed(do_plan, runs)

    def do_preview() -> Any:
        rows = preview(the_plan, fleet, policy, now=NOW)
        return rows, summarize(rows, len(the_plan.waves))

    preview_times, (rows, estimates) = _timed(do_preview, runs)

    def do_both() -> Any:
        p = do_plan()
        rows = preview(p, fleet, policy, now=NOW)
        return summarize(rows, len(p.waves))

    call_times, _ = _timed(do_both, runs)
    return {
        "terminals": n,
        "planned": the_plan.total,
        "waves": [len(w) for w in the_plan.waves],
        "excluded": the_plan.exclusion_counts(),
        "last_install": estimates[-1].last_install.isoformat()
        if estimates[-1].last_install
        else None,
        "rows": len(rows),
        "plan_s": {"median": statistics.median(plan_times), "p95": _p95(plan_times)},
        "preview_s": {"median": statistics.median(preview_times), "p95": _p95(preview_times)},
        "preview_call_s": {"median": statistics.median(call_times), "p95": _p95(call_times)},
        "plan_us_per_terminal": statistics.median(plan_times) / n * 1e6,
        "preview_call_us_per_terminal": statistics.median(call_times) / n * 1e6,
    }


async def _seed_store(path: Path, fleet: list[Candidate]) -> Any:
    """A migrated SQLite file with ``fleet`` as its terminals and the release artifact."""
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    await upgrade_engine(engine)
    rows: list[dict[str, Any]] = [
        {
            "terminal_id": c.terminal_id,
            "model": c.model,
            "serial": f"SN-{c.terminal_id}",
            "firmware_version": c.firmware_version,
            "merchant_id": c.merchant_id,
            "site_id": c.site_id,
            "timezone": c.timezone,
            "online": c.online,
            "first_seen": NOW - timedelta(days=90),
            "last_seen": c.last_seen or NOW - timedelta(days=90),
            "app_versions": {},
            "capabilities": [],
        }
        for c in fleet
    ]
    for start in range(0, len(rows), 5000):
        async with engine.begin() as conn:
            await conn.execute(terminals.insert(), rows[start : start + 5000])
    signed = sign_manifest(MANIFEST, generate_private_key(), "release-bench")
    async with engine.begin() as conn:
        await conn.exec_driver_sql("ANALYZE")
        artifact_id = (
            await conn.execute(
                firmware_artifacts.insert()
                .values(
                    name=MANIFEST.name,
                    version=MANIFEST.version,
                    sha256=MANIFEST.sha256,
                    size=MANIFEST.size,
                    models=list(MANIFEST.models),
                    min_version=MANIFEST.min_version,
                    allow_downgrade=False,
                    release_notes="",
                    signed_manifest=signed.model_dump(mode="json"),
                    key_id=signed.key_id,
                    uploaded_by="user:bench",
                    uploaded_at=NOW,
                )
                .returning(firmware_artifacts.c.id)
            )
        ).scalar_one()
        artifact = await get_artifact(conn, artifact_id)
        assert artifact is not None
        rollout = await create_rollout(
            conn,
            name="pos-os 5.3.0 everywhere",
            artifact=artifact,
            target=TARGET,
            policy=RolloutPolicy(),
            actor="user:bench",
            reason_code="feature",
            now=NOW,
        )
    return engine, rollout.id


async def _store_preview(n: int, runs: int) -> dict[str, Any]:
    """``preview_rollout`` and ``load_candidates`` on a SQLite file of ``n`` terminals."""
    fleet = synthetic_fleet(n)
    with tempfile.TemporaryDirectory() as work:
        engine, rollout_id = await _seed_store(Path(work) / "rollouts.db", fleet)
        try:
            preview_times: list[float] = []
            query_times: list[float] = []
            planned = 0
            for run in range(runs + 1):  # the first run warms the caches, not counted
                gc.collect()
                async with engine.begin() as conn:
                    start = time.perf_counter()
                    result = await preview_rollout(conn, rollout_id, now=NOW)
                    took = time.perf_counter() - start
                planned = len(result.rows)
                async with engine.connect() as conn:
                    start = time.perf_counter()
                    await load_candidates(conn)
                    queried = time.perf_counter() - start
                if run:
                    preview_times.append(took)
                    query_times.append(queried)
        finally:
            await engine.dispose()
    return {
        "terminals": n,
        "planned": planned,
        "preview_rollout_s": {
            "median": statistics.median(preview_times),
            "p95": _p95(preview_times),
        },
        "load_candidates_s": {"median": statistics.median(query_times), "p95": _p95(query_times)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--terminals", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="10,000 terminals, 3 runs")
    parser.add_argument("--no-store", action="store_true", help="the pure planner only")
    args = parser.parse_args(argv)
    n, runs = (10_000, 3) if args.quick else (args.terminals, args.runs)
    policy = RolloutPolicy()
    small = measure(max(1, n // 10), runs, policy)
    full = measure(n, runs, policy)
    for label, m in (("10 %", small), ("full", full)):
        print(
            f"{label:>4} {m['terminals']:>7} terminals: plan p95 {m['plan_s']['p95']:.3f} s "
            f"({m['plan_us_per_terminal']:.2f} us/terminal), preview p95 "
            f"{m['preview_s']['p95']:.3f} s, plan+preview p95 {m['preview_call_s']['p95']:.3f} s; "
            f"waves {m['waves']}, excluded {m['excluded']}",
            file=sys.stderr,
        )
    store = None if args.no_store else asyncio.run(_store_preview(n, runs))
    if store is not None:
        print(
            f"store {n:>7} terminals: preview_rollout p95 {store['preview_rollout_s']['p95']:.3f} s"
            f" (candidate query p95 {store['load_candidates_s']['p95']:.3f} s)",
            file=sys.stderr,
        )
    result = {
        "bench": "rollout_plan",
        "store_preview_p95_s": None if store is None else store["preview_rollout_s"]["p95"],
        "terminals": full["terminals"],
        "runs": runs,
        "preview_call_p95_s": full["preview_call_s"]["p95"],
        "plan_p95_s": full["plan_s"]["p95"],
        "preview_p95_s": full["preview_s"]["p95"],
        "plan_us_per_terminal": full["plan_us_per_terminal"],
        "goal_preview_s": 2.0,
        "goal_met": (store["preview_rollout_s"]["p95"] if store else full["preview_call_s"]["p95"])
        < 2.0,
        "python": sys.version.split()[0],
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "full": full,
        "tenth": small,
        "store": store,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
