"""Diagnostics benchmark: fault-to-incident latency under background load, engine cost.

A private mosquitto and the ingest as ``posfleet serve`` runs it (SQLite, the store writer
process, both lanes) with the diagnostics engine on its hook. Background terminals
publish health at ``--rate`` messages per second (5,000 by default), and ``--preload``
queues a backlog of health reports for the centre before it starts, while fault terminals
report printer jams a few times a second; each fault's latency is the time from its
PUBLISH to the moment its incident is committed (the open notification). Side by side in
the same run: the CPU time the rule engine spends per message, as a fraction of the whole
central CPU time per message (the service process: paho, diagnostics, the hook's
validation; the writer process: validation and store). The background publishers run in
their own processes, so they do not count.

    .venv/bin/python -m bench.diagnostics [--quick] [--rate 5000] [--seconds 20] [--preload N]

The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from posfleet.broker_bridge import BrokerConnection, Ingest
from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.contract import (
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Message,
    Printer,
    PrinterStatus,
    Severity,
    encode,
    topic,
    utcnow,
)
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store import create_engine, upgrade
from posfleet.store.incidents import IncidentRecord

_HEALTH = (
    '{{"seq":{seq},"ts":"{ts}","interval_s":10,"metrics":{{'
    '"battery":{{"percent":{battery},"charging":false,"health_percent":97.0,"cycles":120}},'
    '"temperature_c":{temp},"printer":{{"status":"ok","lines_printed":{lines}}},'
    '"card_reader":{{"chip":{{"reads":{reads},"errors":1}},"magstripe":{{"reads":10,"errors":0}},'
    '"contactless":{{"reads":300,"errors":2}},"insertions_total":5000}},'
    '"network":{{"type":"wifi","rssi_dbm":-61,"host_reachable":true,"tls_failures":0}},'
    '"storage_used_pct":41.5,"memory_used_pct":62.0,"clock_offset_s":0.12,'
    '"keys":{{"dukpt_remaining":900000}},"tamper":false,"transactions":{{"approved":{reads},'
    '"declined":3,"failed":0,"unsettled_batch":12,"decline_codes":{{"05":2}}}},'
    '"uptime_s":{uptime},"reboot_reason":"power_on"}}}}'
)


class OpenTimes:
    """A notifier that notes when each terminal's incident was committed."""

    def __init__(self) -> None:
        self.opened: dict[str, float] = {}

    def notify(self, event: NotificationEvent, incident: IncidentRecord) -> None:
        if event is NotificationEvent.OPENED and incident.terminal_id:
            self.opened.setdefault(incident.terminal_id, time.perf_counter())


def _client(broker: MosquittoBroker, creds: BrokerCredentials, name: str) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv5)
    client.username_pw_set(creds.username, creds.password)
    client.connect(broker.central_host, broker.central_port)
    client.loop_start()
    return client


@dataclass(frozen=True)
class LoadSpec:
    """What one background publisher process does."""

    host: str
    port: int
    username: str
    password: str
    rate: float
    seconds: float
    terminals: int
    worker: int


def _background(spec: LoadSpec, go: Event, sent: Queue) -> None:  # type: ignore[type-arg]
    """Publish health at ``spec.rate`` msg/s for ``spec.seconds`` (runs in its own process)."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-bg-{spec.worker}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(spec.username, spec.password)
    client.max_inflight_messages_set(2000)
    client.connect(spec.host, spec.port)
    client.loop_start()
    ts = utcnow().isoformat().replace("+00:00", "Z")
    tick, owed, seq = 0.01, 0.0, 0
    go.wait()
    started = time.perf_counter()
    try:
        while (now := time.perf_counter()) - started < spec.seconds:
            owed += spec.rate * tick
            while owed >= 1:
                owed -= 1
                seq += 1
                index, round_ = seq % spec.terminals, seq // spec.terminals
                # A sale between two reports on one report in ten (30 sales an hour at a
                # 10 s interval): only then do the reader, printer and sales counters move.
                sales = (round_ + index) // 10
                payload = _HEALTH.format(
                    seq=round_ + 1,
                    ts=ts,
                    battery=50 + index % 50,
                    temp=30 + round_ % 5,
                    lines=1000 + 24 * sales,
                    reads=100 + sales,
                    uptime=3600 + 10 * round_,
                )
                name = f"BG{spec.worker}-{index:05d}"
                client.publish(topic(name, Channel.HEALTH), payload, qos=1)
            # Pacing: this process only publishes; nothing waits on it.
            time.sleep(max(0.0, tick - (time.perf_counter() - now)))
    finally:
        sent.put(seq)
        client.disconnect()
        client.loop_stop()


def _preload(spec: LoadSpec, count: int) -> None:
    """Publish ``count`` health reports as fast as the broker takes them, all acknowledged."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-preload", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(spec.username, spec.password)
    client.max_inflight_messages_set(2000)
    client.connect(spec.host, spec.port)
    client.loop_start()
    ts = utcnow().isoformat().replace("+00:00", "Z")
    infos = []
    try:
        for seq in range(count):
            index, round_ = seq % spec.terminals, seq // spec.terminals
            payload = _HEALTH.format(
                seq=round_ + 1, ts=ts, battery=50 + index % 50, temp=30 + round_ % 5,
                lines=1000 + 24 * round_, reads=100 + round_, uptime=3600 + 10 * round_,
            )  # fmt: skip
            infos.append(client.publish(topic(f"BGP-{index:05d}", Channel.HEALTH), payload, qos=1))
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        client.disconnect()
        client.loop_stop()


def _faults(
    broker: MosquittoBroker, creds: BrokerCredentials, count: int, every_s: float
) -> dict[str, float]:
    client = _client(broker, creds, "bench-faults")
    published: dict[str, float] = {}
    try:
        for n in range(count):
            terminal_id = f"FLT-{n:05d}"
            ok = HealthMetrics(printer=Printer(status=PrinterStatus.OK))
            report = HealthReport(seq=1, ts=utcnow(), interval_s=10, metrics=ok)
            client.publish(
                topic(terminal_id, Channel.HEALTH), encode(report), qos=1
            ).wait_for_publish()
            time.sleep(every_s / 2)
            event = FaultEvent(
                seq=2,
                ts=utcnow(),
                code="printer.jam",
                component=Component.PRINTER,
                severity=Severity.ERROR,
                detail="paper jam",
            )
            published[terminal_id] = time.perf_counter()
            client.publish(topic(terminal_id, Channel.EVENT), encode(event), qos=1)
            time.sleep(every_s / 2)
    finally:
        client.disconnect()
        client.loop_stop()
    return published


def _process_cpu_s(pid: int | None) -> float:
    """User and system CPU seconds of process ``pid`` so far (0 if unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _noting_faults(
    diagnostics: Diagnostics, hooked: dict[str, float]
) -> Callable[[Sequence[Message]], Awaitable[None]]:
    """The diagnostics hook, noting when each fault terminal's event reached it."""

    async def on_stored(messages: Sequence[Message]) -> None:
        now = time.perf_counter()
        for message in messages:
            if message.topic.channel is Channel.EVENT:
                hooked.setdefault(message.topic.terminal_id, now)
        await diagnostics.on_stored(messages)

    return on_stored


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(
    rate: float, seconds: float, terminals: int, workdir: Path, preload: int = 0
) -> dict[str, object]:
    auth = BrokerAuthStore(workdir / "auth")
    creds = auth.add_service_user("central")
    broker = MosquittoBroker(workdir / "mosquitto", auth_dir=auth.directory)
    broker.start()
    url = f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(url)
    opened = OpenTimes()
    connection = BrokerConnection(
        host=broker.central_host,
        port=broker.central_port,
        username=creds.username,
        password=creds.password,
        client_id="bench-central",
    )
    settings = DiagnosticsSettings(tick_interval_s=5.0)
    hooked: dict[str, float] = {}
    if preload:
        # The centre's sessions exist, then it is away while the backlog is published.
        async with Ingest(connection, engine) as ingest:
            await ingest.wait_connected(10)
        spec = LoadSpec(
            broker.central_host, broker.central_port, creds.username, creds.password,
            rate=0, seconds=0, terminals=terminals, worker=9,
        )  # fmt: skip
        await asyncio.to_thread(_preload, spec, preload)
    try:
        async with (
            Diagnostics(engine, settings, notifier=opened) as diagnostics,
            # What `posfleet serve` runs: the store writer process, its batch and queue
            # sizes, both lanes.
            Ingest(
                connection, engine, on_stored=_noting_faults(diagnostics, hooked),
                writer="process",
                batch_size=1000, queue_size=4000,
            ) as ingest,
        ):  # fmt: skip
            await ingest.wait_connected(10)
            workers = 2
            context = multiprocessing.get_context("spawn")
            go, sent_queue = context.Event(), context.Queue()
            processes = [
                context.Process(
                    target=_background,
                    args=(
                        LoadSpec(
                            broker.central_host,
                            broker.central_port,
                            creds.username,
                            creds.password,
                            rate / workers,
                            seconds,
                            terminals // workers,
                            w,
                        ),
                        go,
                        sent_queue,
                    ),
                )
                for w in range(workers)
            ]
            for process in processes:
                process.start()
            await asyncio.sleep(2)  # let the publishers connect before the clock starts
            writer_pid = getattr(ingest._writer, "pid", None)
            cpu_started = time.process_time()
            writer_cpu_started = _process_cpu_s(writer_pid)
            rules_pid = diagnostics.engine_pid
            rules_cpu_started = _process_cpu_s(rules_pid)
            started = time.perf_counter()
            go.set()
            fault_count = max(10, int(seconds * 4))
            published = await asyncio.to_thread(
                _faults, broker, creds, fault_count, seconds / fault_count
            )
            for process in processes:
                await asyncio.to_thread(process.join)
            sent = [sent_queue.get() for _ in processes]
            offered_s = time.perf_counter() - started
            deadline = time.perf_counter() + 60
            total = sum(sent) + 2 * fault_count + preload
            while ingest.stats.stored + ingest.stats.duplicates < total:
                if time.perf_counter() > deadline:
                    break
                await asyncio.sleep(0.1)
            drained_s = time.perf_counter() - started
            cpu_s = time.process_time() - cpu_started
            writer_cpu_s = _process_cpu_s(writer_pid) - writer_cpu_started
            rules_cpu_s = _process_cpu_s(rules_pid) - rules_cpu_started
            stats = ingest.stats
            engine_s = diagnostics.stats.engine_seconds
            messages = max(1, diagnostics.engine_stats.messages)
    finally:
        await engine.dispose()
        broker.stop()
    latencies = [
        (opened.opened[tid] - at) * 1000 for tid, at in published.items() if tid in opened.opened
    ]
    # Where a fault's time went: to the hook (lane, validation, store, PUBACK), then to
    # its incident's commit (rules, the recorder's transaction).
    to_hook = [(hooked[tid] - at) * 1000 for tid, at in published.items() if tid in hooked]
    to_incident = [
        (opened.opened[tid] - hooked[tid]) * 1000
        for tid in published
        if tid in hooked and tid in opened.opened
    ]
    return {
        "benchmark": "diagnostics",
        "background_rate_target": rate,
        "background_rate_offered": round(sum(sent) / offered_s),
        "ingest_rate_achieved": round(stats.stored / drained_s),
        "terminals": terminals,
        "faults": len(published),
        "faults_with_incident": len(latencies),
        "fault_to_incident_ms_p50": round(_percentile(latencies, 0.50), 1) if latencies else None,
        "fault_to_incident_ms_p99": round(_percentile(latencies, 0.99), 1) if latencies else None,
        "fault_to_incident_ms_mean": round(statistics.fmean(latencies), 1) if latencies else None,
        "fault_to_hook_ms_p50": round(_percentile(to_hook, 0.50), 1) if to_hook else None,
        "fault_to_hook_ms_p99": round(_percentile(to_hook, 0.99), 1) if to_hook else None,
        "hook_to_incident_ms_p50": round(_percentile(to_incident, 0.5), 1) if to_incident else None,
        "hook_to_incident_ms_p99": (
            round(_percentile(to_incident, 0.99), 1) if to_incident else None
        ),
        "engine_us_per_msg": round(engine_s / messages * 1e6, 2),
        "preloaded_backlog": preload,
        "service_cpu_us_per_msg": round(cpu_s / max(1, stats.stored) * 1e6, 2),
        "writer_cpu_us_per_msg": round(writer_cpu_s / max(1, stats.stored) * 1e6, 2),
        "rule_worker_cpu_us_per_msg": round(rules_cpu_s / max(1, stats.stored) * 1e6, 2),
        "engine_cost_fraction_of_ingest": (
            round(engine_s / total, 4) if (total := cpu_s + writer_cpu_s + rules_cpu_s) else None
        ),
        "rule_evaluations": diagnostics.engine_stats.evaluations,
        "messages_stored": stats.stored,
        "batches": stats.batches,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=5000.0, help="background msg/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--terminals", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="8 s instead of 20")
    parser.add_argument(
        "--preload",
        type=int,
        default=0,
        help="health reports queued for the centre before it starts (a backlog it drains "
        "at full speed while the faults arrive)",
    )
    args = parser.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    with tempfile.TemporaryDirectory(prefix="posfleet-bench-diag-") as tmp:
        result = asyncio.run(run(args.rate, seconds, args.terminals, Path(tmp), args.preload))
    print(
        f"background {result['background_rate_offered']} msg/s offered, "
        f"{result['ingest_rate_achieved']} stored/s ({result['preloaded_backlog']} preloaded); "
        f"fault->incident p50 "
        f"{result['fault_to_incident_ms_p50']} ms, p99 {result['fault_to_incident_ms_p99']} ms "
        f"(to the hook p50 {result['fault_to_hook_ms_p50']} ms, then to the incident p50 "
        f"{result['hook_to_incident_ms_p50']} ms); "
        f"engine {result['engine_us_per_msg']} us/msg = "
        f"{result['engine_cost_fraction_of_ingest']} of ingest"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
