"""The agent's MQTT uplink: birth and LWT, QoS 1 publishes that resolve on PUBACK.

:class:`Uplink` is the seam; :class:`MqttUplink` is the real one over paho-mqtt 2
(MQTT v5, its own network thread, automatic reconnect) and :class:`MemoryUplink` the
in-memory fake that ships for unit tests.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from posfleet.agent.errors import UplinkError
from posfleet.contract import QOS, Channel, topic

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600
"""How long the broker keeps this terminal's session (and queued commands) while offline."""


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained message the uplink (re)publishes on every connect: birth, inventory."""

    channel: Channel
    payload: bytes


class Uplink(Protocol):
    """What the agent needs from its link to the centre."""

    def set_retained(self, messages: list[Retained]) -> None:
        """Replace the retained messages published on every (re)connect."""

    async def wait_connected(self) -> None:
        """Return once the uplink is connected (immediately if it is)."""

    def publish(self, channel: Channel, payload: bytes) -> asyncio.Future[None]:
        """Publish with QoS 1; the future resolves on PUBACK, fails if the broker refuses."""

    def is_connected(self) -> bool:
        """True while connected to the broker."""


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where and as whom the uplink connects."""

    host: str
    port: int
    username: str
    password: str
    client_id: str
    keepalive_s: int = 60
    tls_ca_file: str | None = None
    use_tls: bool = False


class MqttUplink:
    """paho-mqtt 2 client for one terminal; an async context manager."""

    def __init__(
        self, terminal_id: str, endpoint: BrokerEndpoint, *, will: bytes, offline: bytes
    ) -> None:
        self.terminal_id = terminal_id
        self._endpoint = endpoint
        self._offline = offline
        self._retained: list[Retained] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = asyncio.Event()
        self._lock = threading.Lock()
        self._pending: dict[int, asyncio.Future[None] | None] = {}
        self._early_acks: dict[int, ReasonCode] = {}
        self.last_error: str | None = None
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=endpoint.client_id,
            protocol=mqtt.MQTTv5,
        )
        self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.will_set(topic(terminal_id, Channel.STATE), will, qos=QOS, retain=True)
        # paho's own backoff doubles from min to max; a random floor spreads a fleet that
        # lost the broker at the same moment over the first seconds instead of one instant.
        self._client.reconnect_delay_set(min_delay=1 + random.randint(0, 4), max_delay=60)
        if endpoint.use_tls:
            self._client.tls_set(ca_certs=endpoint.tls_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    async def __aenter__(self) -> MqttUplink:
        self._loop = asyncio.get_running_loop()
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        self._client.connect_async(
            self._endpoint.host,
            self._endpoint.port,
            keepalive=self._endpoint.keepalive_s,
            clean_start=False,
            properties=props,
        )
        self._client.loop_start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client.is_connected():
            # A clean shutdown says "offline" itself: the will is only for crashes.
            info = self._client.publish(
                topic(self.terminal_id, Channel.STATE), self._offline, qos=QOS, retain=True
            )
            await asyncio.to_thread(info.wait_for_publish, 2.0)
        self._client.disconnect()
        await asyncio.to_thread(self._client.loop_stop)
        with self._lock:
            for fut in self._pending.values():
                if fut is not None and not fut.done():
                    fut.cancel()
            self._pending.clear()

    def set_retained(self, messages: list[Retained]) -> None:
        """Replace the retained messages; publish them now if connected."""
        self._retained = list(messages)
        if self._client.is_connected():
            self._publish_retained()

    async def wait_connected(self) -> None:
        """Return once connected."""
        await self._connected.wait()

    def is_connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set()

    def publish(self, channel: Channel, payload: bytes) -> asyncio.Future[None]:
        """Publish with QoS 1; the future resolves on PUBACK."""
        assert self._loop is not None, "use MqttUplink as an async context manager"
        fut: asyncio.Future[None] = self._loop.create_future()
        # Never hold our lock across paho's publish(): paho calls on_publish while holding
        # its own message lock, so taking both in opposite orders would deadlock.
        info = self._client.publish(topic(self.terminal_id, channel), payload, qos=QOS)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            fut.set_exception(UplinkError("paho's outgoing queue is full"))
            return fut
        self._track(info.mid, fut)
        return fut

    def _track(self, mid: int, fut: asyncio.Future[None] | None) -> None:
        """Attach ``fut`` (None: nobody waits) to ``mid``, settling it if PUBACK came first."""
        with self._lock:
            early = self._early_acks.pop(mid, None)
            if early is None:
                self._pending[mid] = fut
        if early is not None and fut is not None:
            self._settle(fut, early)

    # -- paho callbacks: they run in paho's network thread ------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            self.last_error = f"broker refused the connection: {reason_code}"
            log.error("%s: %s", self.terminal_id, self.last_error)
            return
        self.last_error = None
        self._publish_retained()
        self._call_in_loop(self._connected.set)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason_code.is_failure:
            log.warning("%s: disconnected from broker: %s", self.terminal_id, reason_code)
        self._call_in_loop(self._connected.clear)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._lock:
            if mid not in self._pending:
                # PUBACK raced ahead of publish() returning: park it for _track() to find.
                self._early_acks[mid] = reason_code
                return
            fut = self._pending.pop(mid)
        if fut is None:
            if reason_code.is_failure:
                log.error(
                    "%s: broker refused a retained publish: %s", self.terminal_id, reason_code
                )
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._settle, fut, reason_code)

    # -- internals ----------------------------------------------------------------------

    @staticmethod
    def _settle(fut: asyncio.Future[None], reason_code: ReasonCode) -> None:
        if fut.done():
            return
        if reason_code.is_failure:
            fut.set_exception(UplinkError(f"broker refused the publish: {reason_code}"))
        else:
            fut.set_result(None)

    def _publish_retained(self) -> None:
        for message in self._retained:
            info = self._client.publish(
                topic(self.terminal_id, message.channel), message.payload, qos=QOS, retain=True
            )
            self._track(info.mid, None)

    def _call_in_loop(self, func: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(func)


@dataclass
class MemoryUplink:
    """In-memory :class:`Uplink` for unit tests: records what was published."""

    connected: bool = True
    published: list[tuple[Channel, bytes]] = field(default_factory=list)
    retained: list[Retained] = field(default_factory=list)
    refuse: bool = False
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def set_retained(self, messages: list[Retained]) -> None:
        """Remember the retained messages."""
        self.retained = list(messages)

    def set_connected(self, connected: bool) -> None:
        """Simulate the broker going away or coming back."""
        self.connected = connected
        if connected:
            self._event.set()
        else:
            self._event.clear()

    async def wait_connected(self) -> None:
        """Return once :meth:`set_connected` made it connected."""
        if self.connected:
            return
        await self._event.wait()

    def is_connected(self) -> bool:
        """True while connected."""
        return self.connected

    def publish(self, channel: Channel, payload: bytes) -> asyncio.Future[None]:
        """Record the message; fail the future when ``refuse`` is set."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.refuse:
            fut.set_exception(UplinkError("refused"))
        else:
            self.published.append((channel, payload))
            fut.set_result(None)
        return fut
