"""Benchmark plumbing: a private broker, persistent sessions, a backlog, a bare drain.

The backlog is published while the subscribers are away, so it sits in their
persistent sessions on the broker; the drain then measures only the subscriber side.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from posfleet.central.broker_auth import BrokerAuthStore, BrokerCredentials
from posfleet.central.mosquitto import MosquittoBroker
from posfleet.contract import Channel, topic

SESSION_EXPIRY_S = 3600
_IN_FLIGHT = 1000
T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)

_HEALTH = (
    '{{"seq":{seq},"ts":"{ts}","interval_s":60,"metrics":{{'
    '"battery":{{"percent":{battery},"charging":false,"health_percent":97.0,"cycles":120}},'
    '"temperature_c":{temp},"printer":{{"status":"ok","lines_printed":{lines}}},'
    '"card_reader":{{"chip":{{"reads":{reads},"errors":1}},"magstripe":{{"reads":10,"errors":0}},'
    '"contactless":{{"reads":300,"errors":2}},"insertions_total":5000}},'
    '"network":{{"type":"wifi","rssi_dbm":-61,"host_reachable":true,"tls_failures":0,'
    '"latency_ms":95.0}},"storage_used_pct":41.5,"memory_used_pct":62.0,"clock_offset_s":0.12,'
    '"keys":{{"dukpt_remaining":900000}},"tamper":false,"transactions":{{"approved":120,'
    '"declined":3,"failed":0,"unsettled_batch":12,"in_progress":false,'
    '"decline_codes":{{"05":2,"51":1}}}},"uptime_s":86400,"reboot_reason":"power_on"}}}}'
)


def health_payload(seq: int, terminal_index: int) -> bytes:
    """A full, valid health report (about 800 bytes, like a real terminal's)."""
    ts = (T0 + timedelta(seconds=60 * seq)).isoformat().replace("+00:00", "Z")
    return _HEALTH.format(
        seq=seq,
        ts=ts,
        battery=50 + terminal_index % 50,
        temp=30 + seq % 20,
        lines=1000 + seq,
        reads=100 + seq,
    ).encode()


def terminal_ids(count: int) -> list[str]:
    """``B-000001`` ... : the benchmark's terminal ids."""
    return [f"B-{n:06d}" for n in range(1, count + 1)]


@dataclass
class BenchBroker:
    """A private mosquitto with one service login for publisher and subscribers."""

    broker: MosquittoBroker
    credentials: BrokerCredentials

    @classmethod
    def start(cls, work_dir: Path) -> BenchBroker:
        """Provision and start it."""
        auth = BrokerAuthStore(work_dir / "auth")
        credentials = auth.add_service_user("bench")
        broker = MosquittoBroker(work_dir / "broker", auth_dir=auth.directory)
        broker.start()
        return cls(broker, credentials)

    def client(self, client_id: str, *, manual_ack: bool = False) -> mqtt.Client:
        """An MQTT v5 client with the service login (not yet connected)."""
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=manual_ack,
        )
        client.username_pw_set(self.credentials.username, self.credentials.password)
        return client

    def create_session(self, client_id: str, filters: Sequence[str]) -> None:
        """Connect once, subscribe QoS 1 and leave: the broker now queues for ``client_id``."""
        client = self.client(client_id)
        done = threading.Event()
        client.on_subscribe = lambda *args: done.set()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        client.connect(
            self.broker.central_host, self.broker.central_port, clean_start=True, properties=props
        )
        client.loop_start()
        options = SubscribeOptions(qos=1)
        client.subscribe([(f, options) for f in filters])
        if not done.wait(10):
            raise RuntimeError(f"{client_id}: no SUBACK")
        client.disconnect()
        client.loop_stop()

    def drop_session(self, client_id: str) -> None:
        """End ``client_id``'s session, so that later backlogs are not queued for it too."""
        client = self.client(client_id)
        connected = threading.Event()
        client.on_connect = lambda *args: connected.set()
        # A clean start discards the kept session; expiry 0 keeps none after this one.
        client.connect(self.broker.central_host, self.broker.central_port, clean_start=True)
        client.loop_start()
        try:
            if not connected.wait(10):
                raise RuntimeError(f"{client_id}: no CONNACK")
        finally:
            client.disconnect()
            client.loop_stop()

    def publish_backlog(
        self, terminals: int, per_terminal: int, processes: int = 2, *, first_seq: int = 1
    ) -> float:
        """Publish ``terminals * per_terminal`` health reports (QoS 1), each terminal's
        numbered from ``first_seq``; returns the seconds."""
        started = time.perf_counter()
        host, port = self.broker.central_host, self.broker.central_port
        slices = [
            _Slice(host, port, self.credentials, terminals, per_terminal, p, processes, first_seq)
            for p in range(processes)
        ]
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(processes) as pool:
            pool.map(_publish_slice, slices)
        return time.perf_counter() - started


@dataclass(frozen=True)
class _Slice:
    """One publisher process's share of the backlog."""

    host: str
    port: int
    credentials: BrokerCredentials
    terminals: int
    per_terminal: int
    part: int
    parts: int
    first_seq: int = 1


def _publish_slice(job: _Slice) -> None:
    host, port, credentials = job.host, job.port, job.credentials
    terminals, per_terminal, part, parts = job.terminals, job.per_terminal, job.part, job.parts
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{part}", protocol=mqtt.MQTTv5
    )
    client.username_pw_set(credentials.username, credentials.password)
    client.max_inflight_messages_set(_IN_FLIGHT)
    # paho rescans its whole outgoing queue on every PUBACK: keep that queue short by
    # publishing only while fewer than _IN_FLIGHT messages await their PUBACK.
    room = threading.Semaphore(_IN_FLIGHT)
    client.on_publish = lambda *args: room.release()
    client.connect(host, port)
    client.loop_start()
    ids = terminal_ids(terminals)
    # Seq-major order, as a live fleet reports: every terminal's seq 1, then seq 2 ...
    for seq in range(job.first_seq, job.first_seq + per_terminal):
        for index in range(part, terminals, parts):
            if not room.acquire(timeout=120):
                raise RuntimeError("publisher: PUBACKs stopped arriving")
            client.publish(topic(ids[index], Channel.HEALTH), health_payload(seq, index), qos=1)
    for _ in range(_IN_FLIGHT):
        if not room.acquire(timeout=120):
            raise RuntimeError("publisher: PUBACKs stopped arriving")
    client.disconnect()
    client.loop_stop()


def bare_drain(bench: BenchBroker, client_id: str, expected: int, receive_maximum: int) -> float:
    """Drain ``client_id``'s session with a paho subscriber that does nothing; seconds."""
    client = bench.client(client_id)
    received = 0
    done = threading.Event()

    def on_message(_client: mqtt.Client, _userdata: object, _msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= expected:
            done.set()

    client.on_message = on_message
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    props.ReceiveMaximum = receive_maximum
    started = time.perf_counter()
    client.connect(
        bench.broker.central_host, bench.broker.central_port, clean_start=False, properties=props
    )
    client.loop_start()
    if not done.wait(600):
        raise RuntimeError(f"bare subscriber got {received} of {expected}")
    elapsed = time.perf_counter() - started
    client.disconnect()
    client.loop_stop()
    return elapsed
