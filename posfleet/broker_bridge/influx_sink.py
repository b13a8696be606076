"""The InfluxDB sink: telemetry written through influxdb-client's v2 write API.

Anything that speaks that API works: InfluxDB 2.x/3.x and VictoriaMetrics. The ingest
hands over each committed batch with :meth:`InfluxSink.submit`, which only appends to a
bounded buffer; a background task writes the buffer in batches, gzip-compressed, and
retries a failed write with capped, jittered backoff. When the backend stays away the
buffer fills, and then the oldest points are dropped and counted: the SQL store still
holds the data, and ingest must never wait for an analytics backend.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Sequence
from types import TracebackType
from typing import Self

import aiohttp
from influxdb_client.client.exceptions import InfluxDBError
from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync
from influxdb_client.domain.write_precision import WritePrecision

from posfleet.broker_bridge.telemetry_points import to_line
from posfleet.broker_bridge.telemetry_sink import SinkStats
from posfleet.contract import Message

log = logging.getLogger(__name__)

_MILLISECONDS: WritePrecision = WritePrecision.MS  # type: ignore[assignment]


class InfluxSink:
    """Batched, retried writes of health and fault points; an async context manager."""

    name = "influxdb"

    def __init__(
        self,
        url: str,
        *,
        token: str,
        org: str,
        bucket: str,
        batch_size: int = 5000,
        flush_interval_s: float = 1.0,
        max_buffered: int = 100_000,
        retry_max_s: float = 30.0,
        timeout_s: float = 10.0,
    ) -> None:
        if batch_size < 1 or max_buffered < batch_size:
            raise ValueError("need 1 <= batch_size <= max_buffered")
        self.url = url
        self.stats = SinkStats()
        self._token, self._org, self._bucket = token, org, bucket
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._max_buffered = max_buffered
        self._retry_max_s = retry_max_s
        self._timeout_ms = int(timeout_s * 1000)
        self._buffer: deque[Message] = deque()
        self._ready = asyncio.Event()
        self._stopping = asyncio.Event()
        self._client: InfluxDBClientAsync | None = None
        self._task: asyncio.Task[None] | None = None

    def submit(self, messages: Sequence[Message]) -> None:
        """Queue ``messages``; if the buffer overflows, drop (and count) the oldest."""
        self._buffer.extend(messages)
        overflow = len(self._buffer) - self._max_buffered
        if overflow > 0:
            for _ in range(overflow):
                self._buffer.popleft()
            self.stats.dropped += overflow
        self.stats.buffered = len(self._buffer)
        if len(self._buffer) >= self._batch_size:
            self._ready.set()

    async def __aenter__(self) -> Self:
        self._client = InfluxDBClientAsync(
            self.url, token=self._token, org=self._org, enable_gzip=True, timeout=self._timeout_ms
        )
        self._task = asyncio.create_task(self._run(), name=f"influx-sink[{self.url}]")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopping.set()
        self._ready.set()
        try:
            if self._task is not None:
                await self._task
        finally:
            if self._client is not None:
                await self._client.close()  # type: ignore[no-untyped-call]

    async def flush(self) -> None:
        """Write everything buffered now (one attempt per batch; failures stay buffered)."""
        while self._buffer:
            if not await self._write_once(self._take()):
                return

    def _take(self) -> list[Message]:
        n = min(self._batch_size, len(self._buffer))
        batch = [self._buffer.popleft() for _ in range(n)]
        self.stats.buffered = len(self._buffer)
        return batch

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with asyncio.timeout(self._flush_interval_s):
                    await self._ready.wait()
            except TimeoutError:
                pass
            self._ready.clear()
            while self._buffer and not self._stopping.is_set():
                await self._write_with_retry(self._take())
        # Shutting down: one last attempt for what is left, no retries.
        await self.flush()

    async def _write_with_retry(self, batch: list[Message]) -> None:
        delay = 0.5
        while not await self._write_once(batch):
            if self._stopping.is_set():
                self._requeue(batch)
                return
            try:
                async with asyncio.timeout(random.uniform(delay / 2, delay)):
                    await self._stopping.wait()
            except TimeoutError:
                delay = min(delay * 2, self._retry_max_s)

    def _requeue(self, batch: list[Message]) -> None:
        self._buffer.extendleft(reversed(batch))
        self.submit([])

    async def _write_once(self, batch: list[Message]) -> bool:
        """True if the batch is dealt with (written, or refused for good and dropped)."""
        points = [line for m in batch if (line := to_line(m)) is not None]
        if not points:
            return True
        assert self._client is not None
        try:
            await self._client.write_api().write(
                self._bucket, self._org, "\n".join(points), write_precision=_MILLISECONDS
            )
        except InfluxDBError as exc:
            self.stats.errors += 1
            status = exc.response.status if exc.response is not None else None
            if status is not None and 400 <= status < 500 and status not in (408, 429):
                # The backend refuses these points for good; retrying cannot help.
                log.error("%s refused %d points: %s", self.url, len(points), exc)
                self.stats.dropped += len(points)
                return True
            log.warning("writing %d points to %s failed: %s", len(points), self.url, exc)
            return False
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.stats.errors += 1
            log.warning("writing %d points to %s failed: %s", len(points), self.url, exc)
            return False
        self.stats.written += len(points)
        return True
