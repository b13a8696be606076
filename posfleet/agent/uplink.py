"""The agent's MQTT uplink: birth and LWT, QoS 1 publishes that resolve on PUBACK, commands.

:class:`Uplink` is the seam; :class:`MqttUplink` is the real one over paho-mqtt 2 (MQTT
v5) and :class:`MemoryUplink` the in-memory fake that ships for unit tests.

:class:`MqttUplink` runs no thread of its own: paho's socket is driven from the asyncio
loop (``add_reader``/``add_writer`` through paho's ``on_socket_*`` callbacks and
``loop_misc`` on a timer), and the uplink reconnects itself with capped, jittered
backoff. A thousand agents therefore share one loop and one thread (the fleet simulator),
and a single agent on a terminal costs no extra thread stacks. Only the blocking TCP/TLS
connect runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import socket
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

from posfleet.agent.backoff import Backoff
from posfleet.agent.errors import UplinkError
from posfleet.agent.publish_guard import PublishGuard
from posfleet.async_tasks import cancel_and_wait
from posfleet.contract import QOS, Channel, topic
from posfleet.tls_contexts import client_context, explain_tls_failure

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 7 * 24 * 3600
"""How long the broker keeps this terminal's session (and queued commands) while offline."""

MAX_INFLIGHT = 64
"""QoS 1 messages paho sends before waiting for PUBACKs (the drain window stays below)."""

MISC_INTERVAL_S = 1.0
"""How often paho's housekeeping (keepalive pings, their timeouts) runs."""

STABLE_CONNECTION_S = 10.0
"""A connection that held this long resets the backoff; a flapping one keeps widening it."""

GOODBYE_TIMEOUT_S = 2.0
"""How long a clean shutdown waits for the broker to take the "offline" state."""

CONNECT_WAIT_S = 15.0
"""Longest a shutdown waits for a TCP/TLS connect already under way in its thread."""

MAX_QUEUED_COMMANDS = 100
"""Commands waiting to be handled; beyond this they are not acknowledged (redelivered)."""

MAX_QUEUED_OFFERS = 20
"""Firmware offers waiting to be handled; beyond this they are left for redelivery."""


@dataclass(frozen=True, slots=True)
class Retained:
    """A retained message the uplink (re)publishes on every connect: birth, inventory."""

    channel: Channel
    payload: bytes


@dataclass(frozen=True, slots=True)
class IncomingCommand:
    """A ``cmd`` or ``fw/offer`` message; call :attr:`ack` once it is safely recorded."""

    payload: bytes
    ack: Callable[[], None]


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

    async def next_command(self) -> IncomingCommand:
        """Wait for the next message on this terminal's ``cmd`` topic."""

    async def next_offer(self) -> IncomingCommand:
        """Wait for the next message on this terminal's ``fw/offer`` topic."""


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where and as whom the uplink connects, and how it retries."""

    host: str
    port: int
    username: str
    password: str
    client_id: str
    keepalive_s: int = 60
    tls_ca_file: str | None = None
    use_tls: bool = False
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 60.0


def tls_context(endpoint: BrokerEndpoint) -> ssl.SSLContext:
    """The verifying TLS context of an ``mqtts://`` endpoint (its CA, its client cert)."""
    return client_context(endpoint.tls_ca_file, endpoint.tls_cert_file, endpoint.tls_key_file)


class MqttUplink:
    """paho-mqtt 2 client for one terminal, driven by the running asyncio loop."""

    def __init__(
        self, terminal_id: str, endpoint: BrokerEndpoint, *, will: bytes, offline: bytes
    ) -> None:
        self.terminal_id = terminal_id
        self._endpoint = endpoint
        self._offline = offline
        self._retained: list[Retained] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._connected = asyncio.Event()
        self._socket_closed = asyncio.Event()
        self._connect_done = threading.Event()
        self._connect_done.set()
        self._generation = 0
        self._fd: int | None = None
        self._pending: dict[int, asyncio.Future[None] | None] = {}
        self._commands: asyncio.Queue[IncomingCommand] = asyncio.Queue(MAX_QUEUED_COMMANDS)
        self._offers: asyncio.Queue[IncomingCommand] = asyncio.Queue(MAX_QUEUED_OFFERS)
        self._offer_topic = topic(terminal_id, Channel.FW_OFFER)
        self._tasks: list[asyncio.Task[None]] = []
        self._misc: asyncio.TimerHandle | None = None
        self._backoff = Backoff(base_s=endpoint.reconnect_min_s, cap_s=endpoint.reconnect_max_s)
        self.last_error: str | None = None
        self.connects = 0
        self.guard = PublishGuard(terminal_id)
        """Refuses (and counts) payloads above the contract's limit before paho sees them."""
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=endpoint.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
            manual_ack=True,
        )
        self._client.username_pw_set(endpoint.username, endpoint.password)
        self._client.will_set(topic(terminal_id, Channel.STATE), will, qos=QOS, retain=True)
        self._client.max_inflight_messages_set(MAX_INFLIGHT)
        if endpoint.use_tls:
            self._client.tls_set_context(tls_context(endpoint))
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._client.on_socket_open = self._on_socket_open
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._on_register_write
        self._client.on_socket_unregister_write = self._on_unregister_write

    async def __aenter__(self) -> MqttUplink:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._tasks.append(
            asyncio.create_task(self._supervise(), name=f"uplink-{self.terminal_id}")
        )
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._housekeeping)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(*self._tasks)
        # A connect still running in its worker thread would leave a socket behind.
        if not self._connect_done.is_set():
            await asyncio.to_thread(self._connect_done.wait, CONNECT_WAIT_S)
            await asyncio.sleep(0)  # let its socket callbacks reach the loop
        if self._connected.is_set():
            # A clean shutdown says "offline" itself: the will is only for crashes.
            goodbye = self._publish_raw(Channel.STATE, self._offline, retain=True)
            try:
                await asyncio.wait_for(goodbye, GOODBYE_TIMEOUT_S)
            except (TimeoutError, UplinkError) as error:
                log.warning("%s: offline state not acknowledged: %s", self.terminal_id, error)
        if self._fd is not None:
            self._client.disconnect()
            try:
                await asyncio.wait_for(self._socket_closed.wait(), GOODBYE_TIMEOUT_S)
            except TimeoutError:
                log.warning("%s: broker did not close the connection in time", self.terminal_id)
        if self._misc is not None:
            self._misc.cancel()
        self._forget_socket()
        for fut in self._pending.values():
            if fut is not None and not fut.done():
                fut.cancel()
        self._pending.clear()

    # -- the Uplink seam ------------------------------------------------------------------

    def set_retained(self, messages: list[Retained]) -> None:
        """Replace the retained messages; publish them now if connected."""
        self._retained = list(messages)
        if self._connected.is_set():
            self._publish_retained()

    async def wait_connected(self) -> None:
        """Return once connected."""
        await self._connected.wait()

    def is_connected(self) -> bool:
        """True while connected to the broker."""
        return self._connected.is_set()

    def publish(self, channel: Channel, payload: bytes) -> asyncio.Future[None]:
        """Publish with QoS 1; the future resolves on PUBACK.

        While disconnected paho keeps the message and sends it (and re-sends anything
        unacknowledged, in order) right after the next CONNACK.
        """
        return self._publish_raw(channel, payload, retain=False)

    async def next_command(self) -> IncomingCommand:
        """Wait for the next command addressed to this terminal."""
        return await self._commands.get()

    async def next_offer(self) -> IncomingCommand:
        """Wait for the next firmware offer addressed to this terminal."""
        return await self._offers.get()

    # -- connection supervision -------------------------------------------------------------

    async def _supervise(self) -> None:
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        loop = asyncio.get_running_loop()
        while True:
            self._socket_closed.clear()
            started = loop.time()
            try:
                # The TCP (and TLS) handshake blocks; everything after it runs on the loop.
                self._connect_done.clear()
                await asyncio.to_thread(self._connect_blocking, props)
            except ssl.SSLError as exc:
                self.last_error = explain_tls_failure(
                    exc, host=self._endpoint.host, ca_file=self._endpoint.tls_ca_file
                )
                log.warning("%s: %s", self.terminal_id, self.last_error)
            except (OSError, ValueError) as exc:
                self.last_error = f"cannot reach the broker: {exc}"
                log.warning("%s: %s", self.terminal_id, self.last_error)
            else:
                await self._socket_closed.wait()
            if loop.time() - started >= STABLE_CONNECTION_S:
                self._backoff.reset()
            delay = self._backoff.next_delay()
            log.info("%s: reconnecting to the broker in %.1f s", self.terminal_id, delay)
            await asyncio.sleep(delay)

    def _connect_blocking(self, props: Properties) -> None:
        try:
            self._client.connect(
                self._endpoint.host,
                self._endpoint.port,
                keepalive=self._endpoint.keepalive_s,
                clean_start=False,
                properties=props,
            )
        finally:
            self._connect_done.set()

    def _housekeeping(self) -> None:
        try:
            self._client.loop_misc()
        except Exception:  # paho must never stop our timer
            log.exception("%s: paho housekeeping failed", self.terminal_id)
        assert self._loop is not None
        self._misc = self._loop.call_later(MISC_INTERVAL_S, self._housekeeping)

    # -- paho socket callbacks: they may run in the connect worker thread -------------------

    def _in_loop(self, func: Callable[..., object], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            func(*args)
        else:
            loop.call_soon_threadsafe(func, *args)

    def _on_socket_open(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._watch, sock)

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._socket_gone)

    def _on_register_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, True)

    def _on_unregister_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._in_loop(self._want_write, False)

    def _watch(self, sock: socket.socket | ssl.SSLSocket) -> None:
        assert self._loop is not None
        self._forget_socket()
        self._fd = sock.fileno()
        self._loop.add_reader(self._fd, self._readable, sock)
        if self._client.want_write():
            self._loop.add_writer(self._fd, self._writable)

    def _want_write(self, wanted: bool) -> None:
        if self._fd is None or self._loop is None:
            return
        if wanted:
            self._loop.add_writer(self._fd, self._writable)
        else:
            self._loop.remove_writer(self._fd)

    def _readable(self, sock: socket.socket | ssl.SSLSocket) -> None:
        self._client.loop_read()
        # TLS may hold decrypted bytes the file descriptor no longer signals.
        if isinstance(sock, ssl.SSLSocket) and sock.pending() and self._client.socket() is sock:
            assert self._loop is not None
            self._loop.call_soon(self._readable, sock)

    def _writable(self) -> None:
        self._client.loop_write()

    def _socket_gone(self) -> None:
        self._forget_socket()
        self._socket_closed.set()

    def _forget_socket(self) -> None:
        if self._fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
            self._loop.remove_writer(self._fd)
        self._fd = None

    # -- paho protocol callbacks: on the loop -------------------------------------------------

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
        self.connects += 1
        self._generation += 1
        log.info(
            "%s: connected to the broker (session present: %s)",
            self.terminal_id,
            flags.session_present,
        )
        client.subscribe([(topic(self.terminal_id, Channel.CMD), QOS), (self._offer_topic, QOS)])
        self._publish_retained()
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # A refused CONNECT ends in a disconnect too: keep the refusal as the reason.
        if reason_code.is_failure and self._connected.is_set():
            self.last_error = f"disconnected from the broker: {reason_code}"
            log.warning("%s: %s", self.terminal_id, self.last_error)
        self._in_loop(self._connected.clear)

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Properties | None,
    ) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None:
            if reason_code.is_failure:
                log.error(
                    "%s: broker refused a retained publish: %s", self.terminal_id, reason_code
                )
            return
        if fut.done():
            return
        if reason_code.is_failure:
            fut.set_exception(UplinkError(f"broker refused the publish: {reason_code}"))
        else:
            fut.set_result(None)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        generation, mid, qos = self._generation, message.mid, message.qos

        def ack() -> None:
            # A message id belongs to one connection: after a reconnect the broker
            # redelivers the command instead, and the old id may name another message.
            if generation == self._generation and self._connected.is_set() and qos > 0:
                client.ack(mid, qos)

        queue, what = (
            (self._offers, "firmware offers")
            if message.topic == self._offer_topic
            else (self._commands, "commands")
        )
        try:
            queue.put_nowait(IncomingCommand(bytes(message.payload), ack))
        except asyncio.QueueFull:
            log.warning(
                "%s: too many %s queued; leaving one for redelivery", self.terminal_id, what
            )

    # -- internals ----------------------------------------------------------------------

    def _publish_raw(
        self, channel: Channel, payload: bytes, *, retain: bool
    ) -> asyncio.Future[None]:
        assert self._loop is not None, "use MqttUplink as an async context manager"
        fut: asyncio.Future[None] = self._loop.create_future()
        if (too_large := self.guard.check(channel, payload)) is not None:
            fut.set_exception(too_large)
            return fut
        info = self._client.publish(
            topic(self.terminal_id, channel), payload, qos=QOS, retain=retain
        )
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            fut.set_exception(UplinkError("paho's outgoing queue is full"))
            return fut
        self._pending[info.mid] = fut
        return fut

    def _publish_retained(self) -> None:
        for message in self._retained:
            if self.guard.check(message.channel, message.payload) is not None:
                continue
            info = self._client.publish(
                topic(self.terminal_id, message.channel), message.payload, qos=QOS, retain=True
            )
            self._pending[info.mid] = None


@dataclass
class MemoryUplink:
    """In-memory :class:`Uplink` for unit tests: records what was published.

    Tests hand commands to the agent with :meth:`deliver` (firmware offers with
    :meth:`deliver_offer`) and see which were acknowledged in :attr:`acked`.
    """

    connected: bool = True
    published: list[tuple[Channel, bytes]] = field(default_factory=list)
    retained: list[Retained] = field(default_factory=list)
    refuse: bool = False
    acked: list[bytes] = field(default_factory=list)
    guard: PublishGuard = field(default_factory=lambda: PublishGuard("memory-uplink"))
    _event: asyncio.Event = field(default_factory=asyncio.Event)
    _commands: asyncio.Queue[IncomingCommand] = field(default_factory=asyncio.Queue)
    _offers: asyncio.Queue[IncomingCommand] = field(default_factory=asyncio.Queue)

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
        """Record the message; fail the future when ``refuse`` is set or it is too large."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if (too_large := self.guard.check(channel, payload)) is not None:
            fut.set_exception(too_large)
        elif self.refuse:
            fut.set_exception(UplinkError("refused"))
        else:
            self.published.append((channel, payload))
            fut.set_result(None)
        return fut

    def deliver(self, payload: bytes) -> None:
        """Hand the agent a command as if it arrived on its ``cmd`` topic."""
        self._commands.put_nowait(IncomingCommand(payload, lambda: self.acked.append(payload)))

    async def next_command(self) -> IncomingCommand:
        """The next delivered command."""
        return await self._commands.get()

    def deliver_offer(self, payload: bytes) -> None:
        """Hand the agent a firmware offer as if it arrived on its ``fw/offer`` topic."""
        self._offers.put_nowait(IncomingCommand(payload, lambda: self.acked.append(payload)))

    async def next_offer(self) -> IncomingCommand:
        """The next delivered firmware offer."""
        return await self._offers.get()
