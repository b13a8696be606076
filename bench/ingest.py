"""Ingest benchmark: drain rate of the full pipeline against a bare paho subscriber.

A backlog of health reports from many terminals is preloaded into persistent sessions on
a private mosquitto, then drained (a) by a paho subscriber that does nothing and (b) by
the full ingest pipeline on SQLite, side by side in one run: in three rounds, each on a
fresh backlog, whose median ratio is the headline (the machine's speed drifts). Also measured: two
instances sharing one subscription, the effect of fleet size at a fixed message count,
and the fleet list's p95 query time at 100,000 terminals (SQLite and PostgreSQL).

    .venv/bin/python -m bench.ingest            # 200,000 reports from 10,000 terminals
    .venv/bin/python -m bench.ingest --quick    # a smaller run

The last line of output is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest_broker_load import BenchBroker, bare_drain
from bench.ingest_pipeline_run import (
    connection,
    migrate,
    pipeline_drain,
    prepare_round,
    rolled_up_samples,
    run_instance,
    stored_samples,
)
from bench.ingest_registry_queries import registry_query_p95
from posfleet.broker_bridge import BrokerConnection, tune_gc
from posfleet.central.settings import CentralSettings

# What `posfleet serve` runs with by default.
QUEUE_SIZE: int = CentralSettings.model_fields["ingest_queue_size"].default
BATCH_SIZE: int = CentralSettings.model_fields["ingest_batch_size"].default


def _say(text: str) -> None:
    print(text, flush=True)


HEADLINE_ROUNDS = 3
"""Rounds of (a) and (b); the headline figures are the medians over them."""


def headline(bench: BenchBroker, work: Path, terminals: int, per_terminal: int) -> dict[str, Any]:
    """(a) bare subscriber vs (b) full pipeline, in rounds on fresh backlogs.

    Both drain the same backlog in each round (one publish feeds both sessions), one
    right after the other, the order alternating from round to round. The machine's
    speed drifts over seconds, so a ratio is taken within each round and the median
    round is reported, along with every round.
    """
    total = terminals * per_terminal
    rounds: list[dict[str, Any]] = []
    for number in range(1, HEADLINE_ROUNDS + 1):
        prepared = prepare_round(
            bench, work, "bench-pipeline", number, terminals=terminals, per_terminal=per_terminal
        )
        bare_id, conn, url = prepared.bare_id, prepared.conn, prepared.url
        database, publish_s = prepared.database, prepared.publish_s
        if number % 2:
            bare_s = _bare_round(bench, bare_id, total)
            pipe_s, hooked = _pipeline_round(conn, url, total)
        else:
            pipe_s, hooked = _pipeline_round(conn, url, total)
            bare_s = _bare_round(bench, bare_id, total)
        bench.drop_session(bare_id)
        bench.drop_session(prepared.drain_id)
        stored, rolled_up = stored_samples(database), rolled_up_samples(database)
        _say(
            f"  ratio {bare_s / pipe_s:.3f} ({stored:,} stored, {rolled_up:,} in the rollups, "
            f"{hooked:,} seen by the hook)"
        )
        rounds.append(
            {
                "publish_rate": round(total / publish_s),
                "bare_rate": round(total / bare_s),
                "pipeline_rate": round(total / pipe_s),
                "ratio": round(bare_s / pipe_s, 3),
                "stored": stored,
                "rolled_up": rolled_up,
                "hooked": hooked,
            }
        )
    return {
        "messages": total,
        "terminals": terminals,
        "bare_rate": round(statistics.median(r["bare_rate"] for r in rounds)),
        "pipeline_rate": round(statistics.median(r["pipeline_rate"] for r in rounds)),
        "ratio": statistics.median(r["ratio"] for r in rounds),
        "rounds": rounds,
    }


def _bare_round(bench: BenchBroker, client_id: str, total: int) -> float:
    seconds = bare_drain(bench, client_id, total, QUEUE_SIZE)
    _say(f"  (a) bare paho subscriber: {total / seconds:,.0f} msg/s")
    return seconds


def _pipeline_round(conn: BrokerConnection, url: str, total: int) -> tuple[float, int]:
    drain = asyncio.run(
        pipeline_drain(conn, url, total, queue_size=QUEUE_SIZE, batch_size=BATCH_SIZE)
    )
    _say(
        f"  (b) full pipeline:        {total / drain.seconds:,.0f} msg/s "
        f"(of {drain.seconds:.1f} s, folding the rollups at the end: {drain.fold_seconds:.2f} s)"
    )
    return drain.seconds, drain.hooked


def shared(bench: BenchBroker, work: Path, terminals: int, per_terminal: int) -> dict[str, Any]:
    """Two instances (processes) on one shared subscription and one SQLite file."""
    total = terminals * per_terminal
    group = "benchgroup"
    filters = BrokerConnection(share_group=group).subscriptions()
    ids = ("bench-shared-1", "bench-shared-2")
    for client_id in ids:
        bench.create_session(client_id, filters)
    bench.publish_backlog(terminals, per_terminal)
    path = work / "shared.db"
    url = f"sqlite+aiosqlite:///{path}"
    asyncio.run(migrate(url))
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    started = time.perf_counter()
    workers = [
        ctx.Process(
            target=run_instance,
            args=(
                connection(
                    bench.broker.central_host,
                    bench.broker.central_port,
                    bench.credentials,
                    cid,
                    group,
                ),
                url,
                stop,
                QUEUE_SIZE,
                BATCH_SIZE,
            ),
        )
        for cid in ids
    ]
    for worker in workers:
        worker.start()
    try:
        deadline = time.monotonic() + 900
        while (stored := stored_samples(path)) < total and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        for worker in workers:
            worker.join(30)
        for client_id in ids:
            bench.drop_session(client_id)
    _say(f"two instances, one shared subscription: {total / elapsed:,.0f} msg/s ({stored:,})")
    return {"messages": total, "rate": round(total / elapsed), "stored": stored}


def fleet_sizes(bench: BenchBroker, work: Path, total: int, sizes: list[int]) -> dict[str, int]:
    """Pipeline rate at one message count spread over fleets of different sizes.

    Every terminal of the fleet first reports once (a drain that is not timed: it
    registers the terminals, as a running fleet is), so the timed drain compares the
    cost of a report by fleet size, not that of a first contact, which inserts the
    registry's row. The first-contact drain's rate is reported too (``<size>-first``).
    """
    rates: dict[str, int] = {}
    for terminals in sizes:
        per_terminal = max(1, total // terminals)
        client_id = f"bench-fleet-{terminals}"
        bench.create_session(client_id, BrokerConnection().subscriptions())
        url = f"sqlite+aiosqlite:///{work / f'fleet-{terminals}.db'}"
        asyncio.run(migrate(url))
        conn = connection(
            bench.broker.central_host, bench.broker.central_port, bench.credentials, client_id
        )
        bench.publish_backlog(terminals, 1)
        first = asyncio.run(
            pipeline_drain(conn, url, terminals, queue_size=QUEUE_SIZE, batch_size=BATCH_SIZE)
        )
        bench.publish_backlog(terminals, per_terminal, first_seq=2)
        count = terminals * per_terminal
        drain = asyncio.run(
            pipeline_drain(conn, url, count, queue_size=QUEUE_SIZE, batch_size=BATCH_SIZE)
        )
        bench.drop_session(client_id)
        rates[str(terminals)] = round(count / drain.seconds)
        rates[f"{terminals}-first"] = round(terminals / first.seconds)
        _say(
            f"{terminals:>7,} terminals x {per_terminal}: {count / drain.seconds:,.0f} msg/s "
            f"(folding {drain.fold_seconds:.2f} s of {drain.seconds:.1f} s; their first "
            f"reports, registering them: {terminals / first.seconds:,.0f} msg/s)"
        )
    return rates


def main() -> None:
    """Run the benchmark and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    parser.add_argument("--skip-registry", action="store_true", help="no 100k query run")
    args = parser.parse_args()
    # As `posfleet serve` runs (see posfleet.central.service): the ingest allocates a
    # few objects per message, and the default GC thresholds rescan the whole heap far
    # too often at tens of thousands of messages a second. Applies to (a) and (b) alike.
    tune_gc()
    if args.quick:
        terminals, per_terminal, scale_total, sizes = 2_000, 10, 20_000, [1_000, 10_000]
        registry_size = 20_000
    else:
        terminals, per_terminal, scale_total = 10_000, 20, 100_000
        sizes, registry_size = [1_000, 10_000, 100_000], 100_000
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="posfleet-bench-") as tmp:
        work = Path(tmp)
        bench = BenchBroker.start(work)
        try:
            result["headline"] = headline(bench, work, terminals, per_terminal)
            result["shared_two_instances"] = shared(bench, work, terminals, per_terminal // 2)
            result["fleet_size_rates"] = fleet_sizes(bench, work, scale_total, sizes)
        finally:
            bench.broker.stop()
        if not args.skip_registry:
            result["registry_p95_ms"] = asyncio.run(registry_query_p95(work, registry_size))
    summary = {
        "bare_rate": result["headline"]["bare_rate"],
        "pipeline_rate": result["headline"]["pipeline_rate"],
        "ratio": result["headline"]["ratio"],
        **result,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
