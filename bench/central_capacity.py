"""Central capacity: the service as ``posfleet serve`` runs it, against a bare subscriber.

The headline benchmark of the central path. A backlog of health reports from many
terminals is preloaded into persistent sessions on a private mosquitto, then drained
(a) by a paho subscriber that does nothing and (b) by what ``posfleet serve`` runs on
each message: both ingest lanes, the store writer process (validation, dead letters,
registry, SQL telemetry and its rollups), the diagnostics engine with the built-in rule
pack on the ingest hook, and the incident recorder for whatever it finds. Side by side
in one run, in rounds on fresh backlogs with the order alternating; the median round's
ratio is the headline (the machine's speed drifts).

Each round of (b) also says where the CPU went, per stored message:

- ``paho``: the two lanes' paho threads (socket reads, MQTT parsing, PUBACKs);
- ``writer``: the store writer process (registry, samples, rollups);
- ``decode``: decoding and validating each message, on the service's event loop
  (``IngestStats.decode_seconds``);
- ``rules``: the rule worker process (the rule engine, and reading what the service
  sends it);
- ``loop``: the rest of the service process (batching, the pickled hand-offs to the
  writer and the rule worker, recording incidents, waiting on the interpreter lock).

    .venv/bin/python -m bench.central_capacity            # 200,000 reports, 10,000 terminals
    .venv/bin/python -m bench.central_capacity --quick    # 20,000 reports, 2,000 terminals

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.ingest import BATCH_SIZE, QUEUE_SIZE
from bench.ingest_broker_load import BenchBroker, bare_drain
from bench.ingest_pipeline_run import prepare_round, stored_samples
from posfleet.broker_bridge import BrokerConnection, Ingest, tune_gc
from posfleet.contract import Message
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.store import create_engine, fold_samples

ROUNDS = 3
_TICK = os.sysconf("SC_CLK_TCK")


def _say(text: str) -> None:
    print(text, flush=True)


def _cpu_of(path: str) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (0 once it is gone)."""
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _paho_cpu() -> float:
    """CPU seconds of this process's paho network threads so far."""
    return sum(
        _cpu_of(f"/proc/self/task/{t.native_id}/stat")
        for t in threading.enumerate()
        if t.name.startswith("paho-mqtt-client") and t.native_id is not None
    )


@dataclass(frozen=True)
class ServiceDrain:
    """One drain of the backlog through the service."""

    seconds: float
    stored: int
    findings_recorded: int
    cpu_s: dict[str, float]


async def service_drain(conn: BrokerConnection, url: str, expected: int) -> ServiceDrain:
    """Drain the session as ``posfleet serve`` does; how long it took and where CPU went."""
    engine = create_engine(url)
    drained = asyncio.Event()
    ingest: Ingest | None = None
    try:
        async with Diagnostics(engine, DiagnosticsSettings()) as diagnostics:

            async def on_stored(messages: Sequence[Message]) -> None:
                await diagnostics.on_stored(messages)
                if ingest is not None and ingest.stats.processed >= expected:
                    drained.set()

            started = time.perf_counter()
            process_started = time.process_time()
            paho_total = writer_total = decode = rules = 0.0
            rules_stat = f"/proc/{diagnostics.engine_pid}/stat"
            async with Ingest(
                conn,
                engine,
                on_stored=on_stored,
                queue_size=QUEUE_SIZE,
                batch_size=BATCH_SIZE,
                writer="process",
            ) as ingest:
                writer_pid = getattr(ingest._writer, "pid", None)
                writer_stat = f"/proc/{writer_pid}/stat"
                paho_started, writer_started = _paho_cpu(), _cpu_of(writer_stat)
                rules_started = _cpu_of(rules_stat)
                await drained.wait()
                # Judged and recorded too, not only handed to the rule engine.
                await diagnostics.settled()
                # The rollups are part of the work, as in bench.ingest.
                await fold_samples(engine)
                # Read before the threads and the writer end with the context.
                paho_total = _paho_cpu() - paho_started
                writer_total = _cpu_of(writer_stat) - writer_started
                rules = _cpu_of(rules_stat) - rules_started
                process_total = time.process_time() - process_started
                seconds = time.perf_counter() - started
                stored = ingest.stats.stored
                decode = ingest.stats.decode_seconds
            recorded = sum(
                getattr(diagnostics.recorder.stats, name)
                for name in ("opened", "reopened", "repeated", "resolved", "taken_over")
            )
        cpu = {
            "paho": paho_total,
            "writer": writer_total,
            "decode": decode,
            "rules": rules,
            "loop": max(0.0, process_total - paho_total - decode),
        }
        return ServiceDrain(seconds, stored, recorded, cpu)
    finally:
        await engine.dispose()


def _bare(bench: BenchBroker, client_id: str, total: int) -> float:
    seconds = bare_drain(bench, client_id, total, QUEUE_SIZE)
    _say(f"  (a) bare paho subscriber: {total / seconds:,.0f} msg/s")
    return seconds


def _service(conn: BrokerConnection, url: str, total: int) -> ServiceDrain:
    drain = asyncio.run(service_drain(conn, url, total))
    per_msg = {k: round(v / max(1, drain.stored) * 1e6, 1) for k, v in drain.cpu_s.items()}
    _say(
        f"  (b) the service:          {total / drain.seconds:,.0f} msg/s "
        f"(CPU us per message: {per_msg}; {drain.findings_recorded} findings recorded)"
    )
    return drain


def run_rounds(bench: BenchBroker, work: Path, terminals: int, per_terminal: int) -> dict[str, Any]:
    """(a) bare subscriber and (b) the service on the same backlog, in alternating rounds."""
    total = terminals * per_terminal
    rounds: list[dict[str, Any]] = []
    for number in range(1, ROUNDS + 1):
        # The backlog is health: it waits in the bulk lane's session; the fast lane
        # (<id>-fast) has nothing queued and subscribes when it connects.
        prepared = prepare_round(
            bench, work, "capacity", number, terminals=terminals, per_terminal=per_terminal
        )
        if number % 2:
            bare_s = _bare(bench, prepared.bare_id, total)
            drain = _service(prepared.conn, prepared.url, total)
        else:
            drain = _service(prepared.conn, prepared.url, total)
            bare_s = _bare(bench, prepared.bare_id, total)
        for client_id in (prepared.bare_id, prepared.drain_id, f"{prepared.drain_id}-fast"):
            bench.drop_session(client_id)
        database = prepared.database
        stored = stored_samples(database)
        ratio = bare_s / drain.seconds
        _say(f"  ratio {ratio:.3f} ({stored:,} stored)")
        cpu_us = {k: round(v / max(1, stored) * 1e6, 1) for k, v in drain.cpu_s.items()}
        rounds.append(
            {
                "bare_rate": round(total / bare_s),
                "service_rate": round(total / drain.seconds),
                "ratio": round(ratio, 3),
                "stored": stored,
                "findings_recorded": drain.findings_recorded,
                "cpu_us_per_msg": cpu_us,
                "cpu_us_per_msg_total": round(sum(cpu_us.values()), 1),
            }
        )
    median = sorted(rounds, key=lambda r: r["ratio"])[len(rounds) // 2]
    return {
        "messages": total,
        "terminals": terminals,
        "bare_rate": round(statistics.median(r["bare_rate"] for r in rounds)),
        "service_rate": round(statistics.median(r["service_rate"] for r in rounds)),
        "ratio": median["ratio"],
        "median_round_cpu_us_per_msg": median["cpu_us_per_msg"],
        "rounds": rounds,
    }


def main() -> None:
    """Run the benchmark and print the JSON summary last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")
    args = parser.parse_args()
    tune_gc()  # as `posfleet serve` does, for (a) and (b) alike
    terminals, per_terminal = (2_000, 10) if args.quick else (10_000, 20)
    with tempfile.TemporaryDirectory(prefix="posfleet-capacity-") as tmp:
        bench = BenchBroker.start(Path(tmp))
        try:
            result = run_rounds(bench, Path(tmp), terminals, per_terminal)
        finally:
            bench.broker.stop()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
