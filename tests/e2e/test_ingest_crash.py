"""``posfleet serve`` killed with SIGKILL in the middle of a stream loses and doubles nothing.

The central service runs as a real subprocess configured through ``POSFLEET_*``. A
terminal streams 10,000 health reports; once a good part is stored the service is
killed outright, the stream goes on into the broker's persistent session, and a
restarted service stores the rest. Every report ends up stored exactly once: nothing
was acknowledged before its commit, and redelivered ones are recognised by (terminal,
seq).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from posfleet.central.broker_auth import BrokerCredentials
from posfleet.contract import Channel, HealthMetrics, HealthReport, State, encode, topic
from tests.harness import PrivateBroker, wait_for

STREAM = 10_000
KILL_AFTER = 2_000
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


class CentralProcess:
    """``python -m posfleet.central.cli serve`` with settings from the environment."""

    def __init__(self, broker: PrivateBroker, var_dir: Path, client_id: str) -> None:
        self.log_path = var_dir / "central.log"
        self.env = {
            **os.environ,
            "POSFLEET_VAR_DIR": str(var_dir),
            "POSFLEET_DATABASE_URL": f"sqlite+aiosqlite:///{var_dir / 'posfleet.db'}",
            "POSFLEET_BROKER_URL": broker.central_url,
            "POSFLEET_BROKER_USERNAME": broker.central.username,
            "POSFLEET_BROKER_PASSWORD": broker.central.password,
            "POSFLEET_CLIENT_ID": client_id,
            "POSFLEET_HTTP_PORT": "0",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "posfleet.central.cli", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]


def count(db: Path, sql: str, *args: object) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=10) as conn:
            (value,) = conn.execute(sql, args).fetchone()
    except sqlite3.OperationalError:
        return 0  # the schema is not there yet
    return int(value or 0)


def stream(host: str, port: int, credentials: BrokerCredentials, terminal_id: str) -> None:
    """Publish the whole stream QoS 1 as the terminal, as fast as the broker takes it."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"stream-{terminal_id}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(credentials.username, credentials.password)
    client.max_inflight_messages_set(500)
    acked = threading.Semaphore(0)
    client.on_publish = lambda *args: acked.release()
    client.connect(host, port)
    client.loop_start()
    try:
        name = topic(terminal_id, Channel.HEALTH)
        for seq in range(1, STREAM + 1):
            report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=HealthMetrics())
            client.publish(name, encode(report), qos=1)
        for _ in range(STREAM):
            assert acked.acquire(timeout=60), "the broker stopped acknowledging"
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def central(fresh_broker: PrivateBroker, tmp_path: Path) -> Iterator[CentralProcess]:
    process = CentralProcess(fresh_broker, tmp_path, f"central-crash-{uuid.uuid4().hex[:8]}")
    try:
        yield process
    finally:
        process.stop()


def test_sigkill_mid_stream_then_restart_stores_every_report_once(
    fresh_broker: PrivateBroker, central: CentralProcess, tmp_path: Path
) -> None:
    # A broker of its own: no other test's retained messages reach this service.
    broker = fresh_broker
    terminal_id = f"CRASH-{uuid.uuid4().hex[:8]}"
    credentials = broker.provision_terminal(terminal_id)
    db = tmp_path / "posfleet.db"
    central.start()
    # The birth message proves the service is subscribed before the stream starts.
    birth = encode(State(online=True, agent_version="1.4.0", boot_id="b1", ts=T0))
    with broker.probe(credentials) as terminal:
        terminal.publish(topic(terminal_id, Channel.STATE), birth, retain=True)
        wait_for(
            lambda: count(db, "SELECT count(*) FROM terminals WHERE terminal_id = ?", terminal_id),
            30,
            0.1,
            description=f"the service to store the birth message; log: {central.log_tail()}",
        )

    publisher = threading.Thread(
        target=stream, args=(broker.host, broker.port, credentials, terminal_id)
    )
    publisher.start()
    samples = "SELECT count(*) FROM health_samples WHERE terminal_id = ?"
    wait_for(lambda: count(db, samples, terminal_id) >= KILL_AFTER, 60, 0.02)
    central.kill()
    at_kill = count(db, samples, terminal_id)
    assert at_kill < STREAM, "the stream finished before the kill; nothing was tested"

    publisher.join(120)
    assert not publisher.is_alive()
    central.start()
    wait_for(
        lambda: count(db, samples, terminal_id) >= STREAM,
        120,
        0.1,
        description=f"all {STREAM} reports after the restart; log: {central.log_tail()}",
    )

    distinct = "SELECT count(DISTINCT seq) FROM health_samples WHERE terminal_id = ?"
    assert count(db, samples, terminal_id) == count(db, distinct, terminal_id) == STREAM
    gaps = "SELECT seq_gaps FROM terminals WHERE terminal_id = ?"
    assert count(db, gaps, terminal_id) == 0
    assert count(db, "SELECT count(*) FROM dead_letters") == 0
