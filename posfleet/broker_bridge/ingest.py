"""The central ingest: broker -> validation -> store, acknowledged only once committed.

paho-mqtt runs its own network thread. It only wraps each message and puts it into a
bounded :class:`~posfleet.broker_bridge.handoff.Handoff`; when that is full the paho
thread waits instead of dropping anything (and the broker, told our Receive Maximum,
holds the rest). The consumer takes what is queued as one batch and hands it to a
:mod:`batch writer <posfleet.broker_bridge.batch_writers>`, which validates and stores
it in one transaction (in this process, or in a store writer process on another core);
only then are the QoS 1 PUBACKs sent: a crash before the commit means the broker
redelivers, and the store is idempotent, so nothing is lost and nothing doubles. The
next batch is already on its way to the writer while one is being acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, Self

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.batch_writers import BatchWriter, InlineWriter, ProcessWriter
from posfleet.broker_bridge.errors import NotSubscribedError
from posfleet.broker_bridge.handoff import Handoff
from posfleet.broker_bridge.ingest_batch import (
    DEFAULT_HANDLERS,
    BatchOutcome,
    ChannelHandler,
    RawMessage,
    is_transient,
)
from posfleet.broker_bridge.ingest_stats import IngestStats
from posfleet.broker_bridge.mqtt_settings import BrokerConnection
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S
from posfleet.broker_bridge.telemetry_sink import TelemetrySink
from posfleet.contract import MAX_PAYLOAD_BYTES, QOS, Channel, Message

log = logging.getLogger(__name__)

StoredHook = Callable[[Sequence[Message]], Awaitable[None]]
"""Called with the newly stored messages after each committed, acknowledged batch.

It runs on the ingest's own path before the next batch is stored: keep it cheap (hand
slow work to a task of your own). Its exceptions are logged and counted, never fatal.
"""

MAX_PACKET_BYTES = 16 * MAX_PAYLOAD_BYTES
"""The Maximum Packet Size we declare at CONNECT: far above the terminals' limit at the
broker (:data:`posfleet.central.mosquitto.TERMINAL_MAX_PACKET_BYTES`), so that nothing the
broker accepted is dropped on its way to us (a broker silently drops what is larger).
Oversized payloads up to this size are dead-lettered and counted here instead."""

_RETRY_MAX_S = 30.0

WriterKind = Literal["inline", "process"]
"""Where batches are validated and stored: on this event loop, or in a writer process."""


class Ingest:
    """Subscribes to everything terminals publish and stores it; an async context manager.

    ``async with Ingest(connection, engine) as ingest: await ingest.wait_connected(10)``.
    Leaving the block stores and acknowledges what is already queued, then disconnects;
    anything not yet acknowledged is redelivered to the persistent session next time.

    ``writer="process"`` validates and stores in a child process (what ``posfleet
    serve`` does), which needs a database another process can open; ``"inline"`` keeps
    everything on this event loop. Either writer folds the stored samples into the
    hourly rollups every ``fold_interval_s`` seconds and when the ingest stops.
    """

    def __init__(
        self,
        connection: BrokerConnection,
        engine: AsyncEngine,
        *,
        on_stored: StoredHook | None = None,
        handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
        sinks: Sequence[TelemetrySink] = (),
        queue_size: int = 2000,
        batch_size: int = 500,
        writer: WriterKind = "inline",
        fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S,
    ) -> None:
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        self._writer: BatchWriter = (
            ProcessWriter(
                engine.url.render_as_string(hide_password=False),
                handlers,
                fold_interval_s=fold_interval_s,
            )
            if writer == "process"
            else InlineWriter(engine, handlers, fold_interval_s=fold_interval_s)
        )
        self.connection = connection
        self.stats = IngestStats()
        self._engine = engine
        self._on_stored = on_stored
        self._handlers = handlers
        self.sinks = tuple(sinks)
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._handoff: Handoff[RawMessage] = Handoff(queue_size)
        self._closing = threading.Event()
        self._stopping = asyncio.Event()
        self._subscribed = asyncio.Event()
        self._session = 0
        self._accepted = False
        self._subscribe_mid: int | None = None
        self._last_error = "no answer from the broker yet"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: mqtt.Client | None = None
        self._tasks: asyncio.TaskGroup | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        self._loop = asyncio.get_running_loop()
        self._handoff.bind(self._loop)
        await self._writer.start()
        self._client = self._build_client()
        tasks = asyncio.TaskGroup()
        await tasks.__aenter__()
        self._tasks = tasks
        tasks.create_task(self._consume(), name=f"ingest-consumer[{self.connection.client_id}]")
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.connection.session_expiry_s
        props.ReceiveMaximum = min(self._queue_size, 65535)
        props.MaximumPacketSize = MAX_PACKET_BYTES
        # Non-blocking: paho's thread connects, and reconnects after any failure.
        self._client.connect_async(
            self.connection.host,
            self.connection.port,
            keepalive=self.connection.keepalive,
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
        self._closing.set()
        self._stopping.set()
        self._handoff.close()
        try:
            if self._tasks is not None:
                # The body's own exception is not the task group's business: passing it
                # in would re-raise it wrapped in an ExceptionGroup.
                await self._tasks.__aexit__(None, None, None)
        finally:
            if self._client is not None:
                self._client.disconnect()
                await asyncio.to_thread(self._client.loop_stop)
            self._subscribed.clear()
            await self._writer.close()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._subscribed.is_set()

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 (part of the API)
        """Return once the broker has acknowledged our subscriptions (SUBACK).

        Raises :class:`NotSubscribedError` with the last reason (refused credentials, a
        refused subscription, no answer) if that does not happen within ``timeout`` s.
        """
        try:
            async with asyncio.timeout(timeout):
                await self._subscribed.wait()
        except TimeoutError:
            raise NotSubscribedError(self.connection.address, self._last_error) from None

    # -- the asyncio side --------------------------------------------------------------

    async def _consume(self) -> None:
        # Two batches in flight: while one is acknowledged and handed to the hook, the
        # writer already validates and stores the next. Batches finish in order.
        in_flight: asyncio.Queue[
            tuple[list[RawMessage], float, asyncio.Task[BatchOutcome | None]] | None
        ] = asyncio.Queue(maxsize=1)

        async def feed() -> None:
            try:
                while batch := await self._handoff.take(self._batch_size):
                    self.stats.queue_depth = len(self._handoff)
                    started = time.perf_counter()
                    task = stages.create_task(self._store_with_retry(batch))
                    await in_flight.put((batch, started, task))
            finally:
                await in_flight.put(None)

        async with asyncio.TaskGroup() as stages:
            stages.create_task(feed(), name=f"ingest-feed[{self.connection.client_id}]")
            while item := await in_flight.get():
                batch, started, task = item
                outcome = await task
                if outcome is not None:
                    await self._finish(batch, outcome)
                    self.stats.batch_latency.observe(time.perf_counter() - started)

    async def process_batch(self, batch: Sequence[RawMessage]) -> BatchOutcome | None:
        """Validate and store ``batch`` in one transaction, acknowledge it, run the hook.

        Transient database errors are retried with capped, jittered backoff until they
        clear; returns None only if the ingest is shutting down first, leaving the batch
        unacknowledged for the broker to redeliver.
        """
        outcome = await self._store_with_retry(batch)
        if outcome is not None:
            await self._finish(batch, outcome)
        return outcome

    async def _finish(self, batch: Sequence[RawMessage], outcome: BatchOutcome) -> None:
        self._acknowledge(batch)
        self.stats.batches += 1
        self.stats.stored += len(outcome.stored)
        self.stats.duplicates += outcome.duplicates
        self.stats.dead_lettered += outcome.dead_lettered
        self.stats.ignored += outcome.ignored
        if outcome.stored:
            for sink in self.sinks:
                sink.submit(outcome.stored)
        if outcome.stored and self._on_stored is not None:
            try:
                await self._on_stored(outcome.stored)
            # The hook is someone else's code; its failure must not stop ingest.
            except Exception:
                self.stats.hook_errors += 1
                log.exception("on_stored hook failed for a batch of %d", len(outcome.stored))

    async def _store_with_retry(self, batch: Sequence[RawMessage]) -> BatchOutcome | None:
        delay = 0.5
        while True:
            try:
                return await self._writer.store(batch)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.stats.store_retries += 1
                log.warning("storing a batch of %d failed, retrying: %s", len(batch), exc)
            finally:
                self.stats.writer_restarts = self._writer.restarts
            if self._stopping.is_set():
                return None
            try:
                async with asyncio.timeout(random.uniform(delay / 2, delay)):
                    await self._stopping.wait()
                return None
            except TimeoutError:
                delay = min(delay * 2, _RETRY_MAX_S)

    def _acknowledge(self, batch: Sequence[RawMessage]) -> None:
        client = self._client
        if client is None:
            return
        for raw in batch:
            # After a reconnect the same mid names a different message: acking it would
            # confirm something never stored. The broker redelivers the old one instead.
            if raw.qos > 0 and raw.session == self._session:
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
            client_id=conn.client_id,
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
            self._last_error = f"broker refused the connection: {reason_code}"
            log.error("%s: %s", self.connection.address, self._last_error)
            return
        self._accepted = True
        self._session += 1
        self._call_in_loop(self._count_connect)
        log.info(
            "connected to %s (session present: %s)", self.connection.address, flags.session_present
        )
        # Retained state/inventory only on a new subscription: a reconnect to a kept
        # session must not replay the whole fleet's retained messages.
        options = SubscribeOptions(qos=QOS, retainHandling=SubscribeOptions.RETAIN_SEND_IF_NEW_SUB)
        _, mid = client.subscribe([(f, options) for f in self.connection.subscriptions()])
        self._subscribe_mid = mid

    def _count_connect(self) -> None:
        self.stats.connects += 1

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
            self._last_error = f"broker refused the subscriptions: {', '.join(refused)}"
            log.error("%s: %s", self.connection.address, self._last_error)
            return
        self._call_in_loop(self._subscribed.set)

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
            self._last_error = f"disconnected: {reason_code}"
            log.warning("%s: %s; paho reconnects", self.connection.address, self._last_error)
        self._accepted = False
        self._call_in_loop(self._subscribed.clear)

    def _on_message(self, _client: mqtt.Client, _userdata: object, msg: mqtt.MQTTMessage) -> None:
        raw = RawMessage(
            topic=_topic_text(msg),
            payload=bytes(msg.payload),
            mid=msg.mid,
            qos=msg.qos,
            retained=bool(msg.retain),
            session=self._session,
        )
        # Backpressure: wait for room rather than drop. Unacknowledged messages left
        # behind at shutdown are redelivered by the broker.
        if self._closing.is_set() or not self._handoff.put(raw):
            return
        # The paho thread is these counters' only writer, so no lock and no loop wake-up.
        self.stats.received += 1
        if len(raw.payload) > MAX_PAYLOAD_BYTES:
            # The batch dead-letters it (the contract's decode refuses it); say who sent it.
            self.stats.oversize += 1
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
