"""The central ingest: broker -> validation -> store, acknowledged only once committed.

Two broker sessions, each an :class:`~posfleet.broker_bridge.ingest_lane.IngestLane` with
its own paho thread and bounded hand-off: the **fast lane** takes fault events, state and
command results, the **bulk lane** health, inventory and firmware status, so a fault never
waits in the broker's queue behind a health backlog. For each lane a consumer takes what
is queued as one batch, validates it once
(:func:`~posfleet.broker_bridge.ingest_batch.prepare_batch`) and hands what the store
needs to the one :mod:`batch writer <posfleet.broker_bridge.batch_writers>`, which
stores it in one transaction (in a store writer process on another core, or on this
loop); only then are the QoS 1 PUBACKs sent and the decoded messages handed to the
hook. A crash before the commit means the broker redelivers, and the store is
idempotent, so nothing is lost and nothing doubles. The next batch is already being
validated and on its way to the writer while one is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Literal, Self

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.batch_writers import BatchWriter, InlineWriter, ProcessWriter
from posfleet.broker_bridge.errors import NotSubscribedError
from posfleet.broker_bridge.ingest_batch import (
    DEFAULT_HANDLERS,
    BatchOutcome,
    ChannelHandler,
    PreparedBatch,
    RawMessage,
    StoreRequest,
    StoreSummary,
    is_transient,
    prepare_batch,
)
from posfleet.broker_bridge.ingest_lane import (
    BULK_CHANNELS,
    FAST_LANE_CHANNELS,
    FAST_SUFFIX,
    MAX_PACKET_BYTES,
    IngestLane,
)
from posfleet.broker_bridge.ingest_stats import IngestStats
from posfleet.broker_bridge.lane_priority import LanePriority
from posfleet.broker_bridge.mqtt_settings import BrokerConnection
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S
from posfleet.broker_bridge.telemetry_sink import TelemetrySink
from posfleet.contract import UPLINK_CHANNELS, Channel, Message

log = logging.getLogger(__name__)

StoredHook = Callable[[Sequence[Message]], Awaitable[None]]
"""Called with the newly stored messages after each committed, acknowledged batch (a
bulk-lane batch in slices of :data:`HOOK_SLICE`, in order).

It runs on the ingest's own path before the next batch is stored: keep it cheap (hand
slow work to a task of your own). Its exceptions are logged and counted, never fatal.
The sequence is a :class:`~posfleet.store.report_batch.SampledMessages`: each health
report's sample, as the store got it, travels with the messages.
"""

__all__ = ["MAX_PACKET_BYTES", "Ingest", "StoredHook", "WriterKind"]

_RETRY_MAX_S = 30.0

HOOK_SLICE = 100
"""Stored messages the bulk lane hands to the hook at a time, pausing for the fast lane
in between (a hundred health reports are 10-15 ms of rules)."""

WriterKind = Literal["inline", "process"]
"""Where batches are stored: in a writer process, or on this event loop."""


class Ingest:
    """Subscribes to everything terminals publish and stores it; an async context manager.

    ``async with Ingest(connection, engine) as ingest: await ingest.wait_connected(10)``.
    Leaving the block stores and acknowledges what is already queued, then disconnects;
    anything not yet acknowledged is redelivered to the persistent session next time.

    ``writer="process"`` (the default, what ``posfleet serve`` runs) stores in a child
    process, which needs a database another process can open; ``"inline"`` stores on
    this event loop (an in-memory database). Either way each message is validated once,
    here, and the hook gets those decoded messages. Either writer folds the stored samples into the
    hourly rollups every ``fold_interval_s`` seconds and when the ingest stops.

    ``fast_lane`` (on by default) takes :data:`FAST_LANE_CHANNELS` in a second broker
    session, ``<client_id>-fast``, so they never wait behind the other channels' backlog;
    both lanes store through the same writer and call the same hook.
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
        writer: WriterKind = "process",
        fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S,
        fast_lane: bool = True,
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
        self._batch_size = batch_size
        self._stopping = asyncio.Event()
        self.lanes = self._make_lanes(connection, queue_size, fast_lane)
        self.priority = LanePriority()
        """Puts the fast lane's batches first on this event loop (lane_priority)."""
        self._tasks: asyncio.TaskGroup | None = None

    def _make_lanes(
        self, connection: BrokerConnection, queue_size: int, fast_lane: bool
    ) -> tuple[IngestLane, ...]:
        lock = threading.Lock()
        if not fast_lane:
            only = IngestLane(
                "all", connection, UPLINK_CHANNELS, client_id=connection.client_id,
                queue_size=queue_size, stats=self.stats, stats_lock=lock,
            )  # fmt: skip
            return (only,)
        fast_id = connection.client_id[: 128 - len(FAST_SUFFIX)] + FAST_SUFFIX
        fast_filters = connection.subscriptions(FAST_LANE_CHANNELS)
        bulk = IngestLane(
            "bulk", connection, BULK_CHANNELS, client_id=connection.client_id,
            queue_size=queue_size, stats=self.stats, stats_lock=lock,
            drop_filters=fast_filters,
        )  # fmt: skip
        # Faults and results come in ones and twos: a small Receive Maximum is plenty.
        fast = IngestLane(
            "fast", connection, FAST_LANE_CHANNELS, client_id=fast_id,
            queue_size=min(queue_size, 1000), stats=self.stats, stats_lock=lock,
        )  # fmt: skip
        return (bulk, fast)

    # -- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        await self._writer.start()
        tasks = asyncio.TaskGroup()
        await tasks.__aenter__()
        self._tasks = tasks
        for lane in self.lanes:
            tasks.create_task(self._consume(lane), name=f"ingest-consumer[{lane.client_id}]")
            lane.start(loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        for lane in self.lanes:
            lane.close_handoff()
        try:
            if self._tasks is not None:
                # The body's own exception is not the task group's business: passing it
                # in would re-raise it wrapped in an ExceptionGroup.
                await self._tasks.__aexit__(None, None, None)
        finally:
            for lane in self.lanes:
                await lane.disconnect()
            await self._writer.close()

    @property
    def connected(self) -> bool:
        """True while every lane is connected and subscribed."""
        return all(lane.subscribed.is_set() for lane in self.lanes)

    async def wait_connected(self, timeout: float) -> None:  # noqa: ASYNC109 (part of the API)
        """Return once the broker has acknowledged every lane's subscriptions (SUBACK).

        Raises :class:`NotSubscribedError` with the last reason (refused credentials, a
        refused subscription, no answer) if that does not happen within ``timeout`` s.
        """
        try:
            async with asyncio.timeout(timeout):
                for lane in self.lanes:
                    await lane.subscribed.wait()
        except TimeoutError:
            waiting = next(lane for lane in self.lanes if not lane.subscribed.is_set())
            raise NotSubscribedError(self.connection.address, waiting.last_error) from None

    # -- the asyncio side --------------------------------------------------------------

    async def _consume(self, lane: IngestLane) -> None:
        # Two batches in flight: while one is acknowledged and handed to the hook, the
        # next is already validated here and stored by the writer. Batches finish in order.
        in_flight: asyncio.Queue[
            tuple[list[RawMessage], PreparedBatch, float, asyncio.Task[StoreSummary | None]] | None
        ] = asyncio.Queue(maxsize=1)
        urgent = lane.name == "fast"
        # With a fast lane, the bulk lane's validation and hook wait at their yields while
        # a fast batch is in hand (lane_priority).
        pause = self.priority.turn if lane.name == "bulk" else None

        async def feed() -> None:
            try:
                while batch := await lane.handoff.take(self._batch_size):
                    if urgent:
                        self.priority.begin()
                    self.stats.queue_depth = sum(len(each.handoff) for each in self.lanes)
                    started = time.perf_counter()
                    try:
                        prepared = await prepare_batch(batch, self._handlers, pause=pause)
                    except BaseException:
                        if urgent:
                            self.priority.end()
                        raise
                    self.stats.decode_seconds += prepared.cpu_seconds
                    task = stages.create_task(
                        self._store_with_retry(prepared.request, urgent=urgent)
                    )
                    await in_flight.put((batch, prepared, started, task))
            finally:
                await in_flight.put(None)

        async with asyncio.TaskGroup() as stages:
            stages.create_task(feed(), name=f"ingest-feed[{lane.client_id}]")
            while item := await in_flight.get():
                batch, prepared, started, task = item
                try:
                    summary = await task
                    if summary is not None:
                        outcome = prepared.outcome(summary)
                        await self._finish(lane, batch, outcome, pause=pause)
                        self.stats.batch_latency.observe(time.perf_counter() - started)
                finally:
                    if urgent:
                        self.priority.end()

    async def process_batch(self, batch: Sequence[RawMessage]) -> BatchOutcome | None:
        """Validate and store ``batch`` in one transaction, acknowledge it, run the hook.

        The batch is acknowledged on the first lane (messages a test hands in carry no
        broker mid). Transient database errors are retried with capped, jittered backoff
        until they clear; returns None only if the ingest is shutting down first, leaving
        the batch unacknowledged for the broker to redeliver.
        """
        prepared = await prepare_batch(batch, self._handlers)
        self.stats.decode_seconds += prepared.cpu_seconds
        summary = await self._store_with_retry(prepared.request)
        if summary is None:
            return None
        outcome = prepared.outcome(summary)
        await self._finish(self.lanes[0], batch, outcome)
        return outcome

    async def _finish(
        self,
        lane: IngestLane,
        batch: Sequence[RawMessage],
        outcome: BatchOutcome,
        *,
        pause: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        lane.acknowledge(batch)
        self.stats.batches += 1
        self.stats.stored += len(outcome.stored)
        self.stats.duplicates += outcome.duplicates
        self.stats.dead_lettered += outcome.dead_lettered
        self.stats.ignored += outcome.ignored
        if outcome.stored:
            for sink in self.sinks:
                sink.submit(outcome.stored)
        if not outcome.stored or self._on_stored is None:
            return
        stored = outcome.stored
        # With ``pause`` (the bulk lane), the hook takes the batch in slices, pausing
        # between them while the fast lane has a batch in hand.
        step = HOOK_SLICE if pause is not None else len(stored)
        for start in range(0, len(stored), step):
            if start:
                assert pause is not None
                await pause()
            part = stored.part(start, start + step)
            try:
                await self._on_stored(part)
            # The hook is someone else's code; its failure must not stop ingest.
            except Exception:
                self.stats.hook_errors += 1
                log.exception("on_stored hook failed for a batch of %d", len(part))

    async def _store_with_retry(
        self, request: StoreRequest, *, urgent: bool = False
    ) -> StoreSummary | None:
        delay = 0.5
        while True:
            try:
                return await self._writer.store(request, urgent=urgent)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self.stats.store_retries += 1
                log.warning("storing a batch of %d failed, retrying: %s", len(request.items), exc)
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
