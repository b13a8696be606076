"""The InfluxDB sink against a real VictoriaMetrics (its InfluxDB v2 write API).

Each test starts ``victoria-metrics`` on a free loopback port with its own storage
directory, writes through influxdb-client, and reads the points back with
VictoriaMetrics' export API.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from posfleet.broker_bridge import InfluxSink
from posfleet.contract import (
    Battery,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Message,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    Severity,
    Topic,
)
from posfleet.contract.topics import Channel
from tests.harness import async_wait_for, free_port, require_binary, wait_for

NOW = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)


class VictoriaMetrics:
    """A ``victoria-metrics`` child process on a loopback port."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.binary = require_binary("victoria-metrics", "victoria-metrics")
        self.data_dir = data_dir
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir.parent / f"vm-{self.port}.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data_dir}",
                # Test points carry fixed timestamps; keep them whatever today is.
                "-retentionPeriod=100y",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._healthy, 15, 0.05, description="victoria-metrics to answer /health")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    def export(self, selector: str) -> list[dict[str, Any]]:
        """Every stored series matching ``selector``, flushed first so it is searchable."""
        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5):
            pass
        query = urllib.parse.urlencode({"match[]": selector})
        with urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=5) as response:
            return [json.loads(line) for line in response.read().splitlines() if line]


@pytest.fixture
def victoria(tmp_path: Path) -> Iterator[VictoriaMetrics]:
    vm = VictoriaMetrics(tmp_path / "vm-data", free_port())
    vm.start()
    try:
        yield vm
    finally:
        vm.stop()


def health(terminal_id: str, seq: int, temperature: float) -> Message:
    metrics = HealthMetrics(
        temperature_c=temperature,
        battery=Battery(percent=12.5, charging=False),
        printer=Printer(status=PrinterStatus.JAM),
        network=Network(type=NetworkType.WIFI, rssi_dbm=-82, host_reachable=False),
    )
    report = HealthReport(seq=seq, ts=NOW + timedelta(minutes=seq), interval_s=60, metrics=metrics)
    return Message(Topic(terminal_id, Channel.HEALTH), report)


def fault(terminal_id: str, seq: int) -> Message:
    event = FaultEvent(
        seq=seq,
        ts=NOW,
        code="printer.jam",
        component=Component.PRINTER,
        severity=Severity.ERROR,
        zvt_result_code=0xCC,
    )
    return Message(Topic(terminal_id, Channel.EVENT), event)


def by_name(series: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["metric"]["__name__"]: s for s in series}


@pytest.fixture
async def sink(victoria: VictoriaMetrics) -> AsyncIterator[InfluxSink]:
    async with InfluxSink(
        victoria.url, token="unused", org="posfleet", bucket="posfleet", flush_interval_s=0.1
    ) as running:
        yield running


async def test_health_and_fault_points_are_read_back(
    victoria: VictoriaMetrics, sink: InfluxSink
) -> None:
    sink.submit([health("T-VM1", 1, 41.5), health("T-VM1", 2, 43.0), fault("T-VM1", 3)])
    await async_wait_for(lambda: sink.stats.written == 3, 10, description="3 points written")

    series = by_name(victoria.export('{terminal_id="T-VM1"}'))
    temperature = series["pos_health_temperature_c"]
    assert temperature["values"] == [41.5, 43.0]
    expected_ms = [int((NOW + timedelta(minutes=m)).timestamp() * 1000) for m in (1, 2)]
    assert temperature["timestamps"] == expected_ms
    assert series["pos_health_battery_percent"]["values"] == [12.5, 12.5]
    assert series["pos_health_printer_fault"]["values"] == [1, 1]
    assert series["pos_health_host_reachable"]["values"] == [0, 0]
    assert series["pos_health_rssi_dbm"]["values"] == [-82, -82]
    assert series["pos_health_seq"]["values"] == [1, 2]
    zvt = series["pos_fault_zvt_result_code"]
    assert zvt["metric"] == {
        "__name__": "pos_fault_zvt_result_code",
        "terminal_id": "T-VM1",
        "code": "printer.jam",
        "component": "printer",
        "severity": "error",
    }
    assert zvt["values"] == [0xCC]
    assert (sink.stats.errors, sink.stats.dropped) == (0, 0)


async def test_writes_are_retried_until_the_backend_comes_up(tmp_path: Path) -> None:
    victoria = VictoriaMetrics(tmp_path / "late-vm", free_port())
    async with InfluxSink(
        victoria.url, token="t", org="o", bucket="b", flush_interval_s=0.05, retry_max_s=0.5
    ) as sink:
        sink.submit([health("T-VM2", seq, 30.0 + seq) for seq in range(1, 6)])
        await async_wait_for(lambda: sink.stats.errors >= 2, 10, description="failed attempts")
        assert sink.stats.written == 0
        victoria.start()
        try:
            await async_wait_for(lambda: sink.stats.written == 5, 15, description="the retry")
            series = by_name(victoria.export('{terminal_id="T-VM2"}'))
        finally:
            victoria.stop()
    assert series["pos_health_temperature_c"]["values"] == [31.0, 32.0, 33.0, 34.0, 35.0]
    assert sink.stats.dropped == 0


async def test_a_full_buffer_drops_the_oldest_points_and_counts_them() -> None:
    # Nothing listens on this port: every write fails, and the buffer must stay bounded.
    url = f"http://127.0.0.1:{free_port()}"
    async with InfluxSink(
        url, token="t", org="o", bucket="b", batch_size=5, max_buffered=10, flush_interval_s=60
    ) as sink:
        sink.submit([health("T-VM3", seq, 20.0) for seq in range(1, 31)])
        assert sink.stats.dropped == 20
        assert sink.stats.buffered == 10
