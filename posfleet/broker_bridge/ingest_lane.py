"""One broker session of the ingest: its paho client, its subscriptions, its hand-off.

The ingest runs two of them (:data:`FAST_LANE_CHANNELS`): a broker keeps one queue per
session and delivers it in order, so a terminal's fault event published behind a backlog
of thousands of health reports would wait for all of them in one session. In a session
of its own, subscribed only to the few urgent channels, it is delivered at once, stored
in the next batch and handed to diagnostics, whatever the other session still holds.

paho-mqtt runs each client's network thread. The lane's callbacks only wrap each message
and put it into the lane's bounded :class:`~posfleet.broker_bridge.handoff.Handoff`;
when that is full the thread waits instead of dropping anything (and the broker, told
our Receive Maximum, holds the rest).
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from posfleet.broker_bridge.handoff import Handoff
from posfleet.broker_bridge.ingest_batch import RawMessage
from posfleet.broker_bridge.ingest_stats import IngestStats
from posfleet.broker_bridge.mqtt_settings import BrokerConnection
from posfleet.contract import MAX_PAYLOAD_BYTES, QOS, UPLINK_CHANNELS, Channel

log = logging.getLogger(__name__)

FAST_LANE_CHANNELS: tuple[Channel, ...] = (Channel.EVENT, Channel.STATE, Channel.CMD_RESULT)
"""What must never wait behind a health backlog: faults the terminal reports (incidents
and their webhooks), online and offline, and the results of commands staff are watching."""

BULK_CHANNELS: tuple[Channel, ...] = tuple(
    c for c in UPLINK_CHANNELS if c not in FAST_LANE_CHANNELS
)
"""Health, inventory and firmware status: the volume, taken in large batches."""

MAX_PACKET_BYTES = 16 * MAX_PAYLOAD_BYTES
"""The Maximum Packet Size we declare at CONNECT: far above the terminals' limit at the
broker (:data:`posfleet.central.mosquitto.TERMINAL_MAX_PACKET_BYTES`), so that nothing the
broker accepted is dropped on its way to us (a broker silently drops what is larger).
Oversized payloads up to this size are dead-lettered and counted here instead."""

FAST_SUFFIX = "-fast"
"""Appended to the configured client id for the fast lane's session."""


class IngestLane:
    """One client, session and hand-off for ``channels``; owned by the ingest.

    ``stats`` is the ingest's: both lanes' paho threads count into it under a lock.
    """

    def __init__(
        self,
        name: str,
        connection: BrokerConnection,
        channels: Sequence[Channel],
        *,
        client_id: str,
        queue_size: int,
        stats: IngestStats,
        stats_lock: threading.Lock,
        drop_filters: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.connection = connection
        self.channels = tuple(channels)
        self.client_id = client_id
        self.queue_size = queue_size
        self.handoff: Handoff[RawMessage] = Handoff(queue_size)
        self.subscribed = asyncio.Event()
        self.last_error = "no answer from the broker yet"
        self.session = 0
        """Counts this lane's connections: a mid is only meaningful on the one it came on."""
        self._filters = connection.subscriptions(self.channels)
        self._share = connection.share
        self._drop_filters = list(drop_filters)
        self._stats = stats
        self._stats_lock = stats_lock
        self._closing = threading.Event()
        self._accepted = False
        self._subscribe_mid: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None

    @property
    def filters(self) -> list[str]:
        """The topic filters this lane subscribes to."""
        return list(self._filters)

    # -- lifecycle (event loop side) -----------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Connect in the background; paho's thread reconnects after any failure."""
        self._loop = loop
        self.handoff.bind(loop)
        self._client = self._build_client()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.connection.session_expiry_s
        props.ReceiveMaximum = min(self.queue_size, 65535)
        props.MaximumPacketSize = MAX_PACKET_BYTES
        self._client.connect_async(
            self.connection.host,
            self.connection.port,
            keepalive=self.connection.keepalive,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()

    def close_handoff(self) -> None:
        """Refuse new messages; the consumer drains what is queued, then stops."""
        self._closing.set()
        self.handoff.close()

    async def disconnect(self) -> None:
        """Leave the broker; what was not acknowledged is redelivered next time."""
        if self._client is not None:
            self._client.disconnect()
            await asyncio.to_thread(self._client.loop_stop)
        self.subscribed.clear()

    def acknowledge(self, batch: Sequence[RawMessage]) -> None:
        """Send the PUBACKs of a committed batch taken from this lane."""
        client = self._client
        if client is None:
            return
        for raw in batch:
            # After a reconnect the same mid names a different message: acking it would
            # confirm something never stored. The broker redelivers the old one instead.
            if raw.qos > 0 and raw.session == self.session:
                client.ack(raw.mid, raw.qos)

    def _call_in_loop(self, func: Callable[..., object], *args: Any) -> bool:
        loop = self._loop
        if loop is None:
            return False
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:
            # The loop is closed: we are shutting down and nobody is left to tell.
            return False
        return True

    # -- the paho thread side ------------------------------------------------------------

    def _build_client(self) -> mqtt.Client:
        conn = self.connection
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if conn.username is not None:
            password = conn.password.get_secret_value() if conn.password is not None else None
            client.username_pw_set(conn.username, password)
        if conn.tls:
            client.tls_set_context(conn.tls_files.context())
        # paho doubles the delay from min to max; a random floor keeps several central
        # instances from reconnecting in lockstep after a broker restart.
        client.reconnect_delay_set(
            min_delay=1 + random.randint(0, 2), max_delay=conn.reconnect_max_s
        )
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("%s (%s lane): %s", self.connection.address, self.name, self.last_error)
            return
        self._accepted = True
        self.session += 1
        self._call_in_loop(self._count_connect)
        log.info(
            "connected to %s, %s lane (session present: %s)",
            self.connection.address,
            self.name,
            flags.session_present,
        )
        if flags.session_present and self._drop_filters:
            # A session kept from a version that took every channel in one lane: the
            # other lane takes these now, so this one must stop receiving them.
            client.unsubscribe(self._drop_filters)
        # Retained state/inventory only on a new subscription: a reconnect to a kept
        # session must not replay the whole fleet's retained messages.
        options = SubscribeOptions(qos=QOS, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _, mid = client.subscribe([(f, options) for f in self._filters])
        self._subscribe_mid = mid

    def _count_connect(self) -> None:
        self._stats.connects += 1

    def _on_subscribe(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason_codes: list[ReasonCode],
        _properties: Properties | None,
    ) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [str(rc) for rc in reason_codes if rc.is_failure]
        if refused:
            self.last_error = f"broker refused the subscriptions: {', '.join(refused)}"
            log.error("%s (%s lane): %s", self.connection.address, self.name, self.last_error)
            return
        self._call_in_loop(self.subscribed.set)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        # A refused CONNECT is followed by this callback too; keep the refusal as the reason.
        if self._accepted and not self._closing.is_set():
            self.last_error = f"disconnected: {reason_code}"
            log.warning(
                "%s (%s lane): %s; paho reconnects",
                self.connection.address,
                self.name,
                self.last_error,
            )
        self._accepted = False
        self._call_in_loop(self.subscribed.clear)

    def _on_message(self, client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        name = _topic_text(msg)
        if self._share is not None and not self._share.owns_topic(name):
            # Another instance's terminal (partition mode): it stores and judges it.
            if msg.qos > 0:
                client.ack(msg.mid, msg.qos)
            with self._stats_lock:
                self._stats.other_partition += 1
            return
        raw = RawMessage(
            topic=name,
            payload=bytes(msg.payload),
            mid=msg.mid,
            qos=msg.qos,
            retained=bool(msg.retain),
            session=self.session,
        )
        # Backpressure: wait for room rather than drop. Unacknowledged messages left
        # behind at shutdown are redelivered by the broker.
        if self._closing.is_set() or not self.handoff.put(raw):
            return
        oversize = len(raw.payload) > MAX_PAYLOAD_BYTES
        # Two lanes' threads count here; an uncontended lock costs well under a microsecond.
        with self._stats_lock:
            self._stats.received += 1
            if oversize:
                self._stats.oversize += 1
        if oversize:
            # The batch dead-letters it (the contract's decode refuses it); say who sent it.
            log.warning(
                "%s: payload of %d bytes exceeds the contract's %d; dead-lettered",
                raw.topic,
                len(raw.payload),
                MAX_PAYLOAD_BYTES,
            )


def _topic_text(msg: mqtt.MQTTMessage) -> str:
    try:
        return msg.topic
    except UnicodeDecodeError:
        # MQTT requires UTF-8 topics but a broker may pass anything; keep it legible
        # so that it can be dead-lettered like any other bad input.
        return msg._topic.decode("utf-8", "backslashreplace")
