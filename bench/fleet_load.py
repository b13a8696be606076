"""Can one process carry 1,000 simulated terminals at one report per 10 s?

Runs the fleet simulator (in-process serial, paho driven from the asyncio loop) against a
private mosquitto and counts, with a separate subscriber, the health reports that arrive
during a measurement window once every agent is up. Before that, side by side, it
measures what the two ways of running paho cost for the same number of idle connected
clients: one network thread per client (``loop_start``) and the loop-driven uplink the
agents use.

Usage: python -m bench.fleet_load [--terminals 1000] [--interval 10] [--window 60]
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from posfleet.agent.uplink import BrokerEndpoint, MqttUplink
from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.fleet_provisioning import provision_fleet
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.simulator.fleet import FleetOptions, SerialMode, load_fleet_file, run_fleet


def rss_mb(pid: int | None = None) -> float:
    """Resident set size of a process now, in MB."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
    return kb / 1024


def cpu_s(pid: int | None = None) -> float:
    """User + system CPU seconds a process has used so far."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Counter:
    """A subscriber recording every health report's terminal, seq and timestamp."""

    def __init__(self, broker: MosquittoBroker, creds: BrokerCredentials) -> None:
        self.reports: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()
        self._client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.username_pw_set(creds.username, creds.password)
        self._client.on_message = self._on_message
        self._client.connect(broker.central_host, broker.central_port)
        self._client.subscribe("pos/v1/+/health", qos=0)
        self._client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        report = json.loads(message.payload)
        ts = datetime.fromisoformat(report["ts"]).timestamp()
        with self._lock:
            self.reports.append((message.topic.split("/")[2], report["seq"], ts))

    def terminals(self) -> int:
        """Distinct terminals heard from so far."""
        with self._lock:
            return len({t for t, _, _ in self.reports})

    def snapshot(self) -> list[tuple[str, int, float]]:
        with self._lock:
            return list(self.reports)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def idle_threaded(
    broker: MosquittoBroker, creds: list[BrokerCredentials], hold_s: float
) -> dict[str, float]:
    """N paho clients with a network thread each, connected and idle for ``hold_s``."""
    rss0, cpu0 = rss_mb(), cpu_s()
    clients = []
    for c in creds:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"thr-{c.username}", protocol=mqtt.MQTTv5
        )
        client.username_pw_set(c.username, c.password)
        client.connect(broker.host, broker.port, keepalive=30)
        client.loop_start()
        clients.append(client)
    cpu1 = cpu_s()
    time.sleep(hold_s)
    result = {"rss_mb": rss_mb() - rss0, "idle_cpu_s": cpu_s() - cpu1, "setup_cpu_s": cpu1 - cpu0}
    # Disconnect all first so the threads wind down together, then join them.
    for client in clients:
        client.disconnect()
    for client in clients:
        client.loop_stop()
    return result


async def idle_loop_driven(
    broker: MosquittoBroker, creds: list[BrokerCredentials], hold_s: float
) -> dict[str, float]:
    """N loop-driven uplinks, connected and idle for ``hold_s``."""
    rss0, cpu0 = rss_mb(), cpu_s()
    uplinks = [
        MqttUplink(
            c.username,
            BrokerEndpoint(
                broker.host, broker.port, c.username, c.password, f"loop-{c.username}", 30
            ),
            will=b"{}",
            offline=b"{}",
        )
        for c in creds
    ]
    for uplink in uplinks:
        await uplink.__aenter__()
    await asyncio.wait_for(asyncio.gather(*(u.wait_connected() for u in uplinks)), 120)
    cpu1 = cpu_s()
    await asyncio.sleep(hold_s)
    result = {"rss_mb": rss_mb() - rss0, "idle_cpu_s": cpu_s() - cpu1, "setup_cpu_s": cpu1 - cpu0}
    for uplink in uplinks:
        await uplink.__aexit__(None, None, None)
    return result


async def fleet_run(
    broker: MosquittoBroker,
    fleet_path: Path,
    counter: Counter,
    args: argparse.Namespace,
    work: Path,
) -> dict[str, Any]:
    fleet = load_fleet_file(fleet_path)
    options = FleetOptions(
        broker_url=broker.url,
        health_interval_s=args.interval,
        fault_poll_s=5.0,
        state_dir=work / "fleet",
        serial=SerialMode.MEMORY,
        start_spread_s=args.interval,
    )
    stop = asyncio.Event()
    rss0 = rss_mb()
    task = asyncio.create_task(run_fleet(fleet.terminals, options, stop))
    # Warm-up: every agent has connected and reported, then one more interval.
    warm_up_started = time.monotonic()
    while counter.terminals() < args.terminals:
        if time.monotonic() - warm_up_started > 300:
            raise SystemExit(f"only {counter.terminals()} terminals reported within 300 s")
        await asyncio.sleep(1.0)
    warm_up_s = time.monotonic() - warm_up_started
    await asyncio.sleep(args.interval)
    start_cpu, start_broker_cpu = cpu_s(), cpu_s(broker.pid)
    start_wall, started = time.time(), time.monotonic()
    lag_max = 0.0
    while (elapsed := time.monotonic() - started) < args.window:
        tick = time.monotonic()
        await asyncio.sleep(0.5)
        lag_max = max(lag_max, time.monotonic() - tick - 0.5)
    end_wall = time.time()
    cpu = cpu_s() - start_cpu
    broker_cpu = cpu_s(broker.pid) - start_broker_cpu
    rss = rss_mb()
    # Reports stamped inside the window, counted once they arrived (allow one interval).
    await asyncio.sleep(min(args.interval, 5))
    reports = counter.snapshot()
    in_window = [(t, q) for t, q, ts in reports if start_wall <= ts < end_wall]
    received = len(set(in_window))
    duplicates = len(reports) - len(set((t, q) for t, q, _ in reports))
    stop.set()
    await task
    expected = args.terminals / args.interval * elapsed
    return {
        "terminals": args.terminals,
        "interval_s": args.interval,
        "window_s": round(elapsed, 1),
        "reports_expected": round(expected),
        "reports_received": received,
        "duplicates": duplicates,
        "warm_up_s": round(warm_up_s, 1),
        "achieved_ratio": round(received / expected, 3),
        "reports_per_s": round(received / elapsed, 1),
        "fleet_cpu_s_per_s": round(cpu / elapsed, 3),
        "fleet_cpu_ms_per_report": round(1000 * cpu / max(1, received), 2),
        "broker_cpu_s_per_s": round(broker_cpu / elapsed, 3),
        "fleet_rss_mb": round(rss, 1),
        "fleet_rss_growth_mb": round(rss - rss0, 1),
        "event_loop_lag_max_s": round(lag_max, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=10)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--idle-clients", type=int, default=None, help="default: --terminals")
    parser.add_argument("--idle-hold", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="fleet-load-") as tmp:
        work = Path(tmp)
        auth = BrokerAuthStore(work / "auth")
        central = auth.add_service_user("central")
        with MosquittoBroker(work / "broker", auth_dir=auth.directory) as broker:
            fleet_path = provision_fleet(
                auth.directory, args.terminals, "LOAD", broker.url, work / "fleet.json"
            )
            broker.reload()
            time.sleep(2.0)  # mosquitto re-reads its password file after SIGHUP
            fleet = load_fleet_file(fleet_path)
            idle_n = args.idle_clients or args.terminals
            creds = [BrokerCredentials(t.terminal_id, t.password) for t in fleet.terminals[:idle_n]]
            threaded = idle_threaded(broker, creds, args.idle_hold)
            print(f"{idle_n} idle clients, thread each: {threaded}", flush=True)
            looped = asyncio.run(idle_loop_driven(broker, creds, args.idle_hold))
            print(f"{idle_n} idle clients, loop-driven: {looped}", flush=True)
            counter = Counter(broker, central)
            try:
                result = asyncio.run(fleet_run(broker, fleet_path, counter, args, work))
            finally:
                counter.close()
    result["idle_clients"] = idle_n
    result["idle_threads_rss_mb"] = round(threaded["rss_mb"], 1)
    result["idle_loop_rss_mb"] = round(looped["rss_mb"], 1)
    result["idle_threads_cpu_s_per_s"] = round(threaded["idle_cpu_s"] / args.idle_hold, 3)
    result["idle_loop_cpu_s_per_s"] = round(looped["idle_cpu_s"] / args.idle_hold, 3)
    result["idle_rss_ratio_threads_vs_loop"] = round(
        threaded["rss_mb"] / max(0.1, looped["rss_mb"]), 2
    )
    result["idle_cpu_ratio_threads_vs_loop"] = round(
        threaded["idle_cpu_s"] / max(0.001, looped["idle_cpu_s"]), 2
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
