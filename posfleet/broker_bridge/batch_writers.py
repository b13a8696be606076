"""Where the ingest's validated batches are stored: in a child process, or in this one.

The ingest validates each batch once itself
(:func:`~posfleet.broker_bridge.ingest_batch.prepare_batch`) and hands a writer the
batch's :class:`~posfleet.broker_bridge.ingest_batch.StoreRequest`. :class:`ProcessWriter`
(what ``posfleet serve`` runs) sends it to a store writer process
(:mod:`~posfleet.broker_bridge.store_worker`) and waits for its commit, so the SQL runs
on another core while this process keeps up with the broker and runs diagnostics: with
one interpreter lock per process, that is what lets the centre use a second core.
:class:`InlineWriter` runs the same :func:`~posfleet.broker_bridge.ingest_batch.store_prepared`
on the ingest's own event loop, for an in-memory database or a small installation.

Both store one batch per call and raise :class:`TransientStoreError` (or a database
error that :func:`~posfleet.broker_bridge.ingest_batch.is_transient` recognises) when
the batch may simply be sent again; the ingest retries with backoff.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet import child_process
from posfleet.broker_bridge.errors import BridgeError, TransientStoreError
from posfleet.broker_bridge.ingest_batch import (
    DEFAULT_HANDLERS,
    ChannelHandler,
    StoreRequest,
    StoreSummary,
    store_prepared,
)
from posfleet.broker_bridge.rollup_folding import DEFAULT_FOLD_INTERVAL_S, RollupFolding
from posfleet.broker_bridge.worker_frames import (
    FrameError,
    WriterConfig,
    encode_frame,
    read_frame,
)
from posfleet.contract import Channel, utcnow
from posfleet.store.engine import write_transaction

log = logging.getLogger(__name__)

WRITER_START_TIMEOUT_S = 60.0
"""How long the writer process may take to import and open its engine."""

WRITER_STOP_TIMEOUT_S = 30.0
"""How long the writer may take to finish its last batch at shutdown before it is killed."""


class WriterError(BridgeError):
    """The store writer failed in a way a retry will not mend (a bug, a bad configuration)."""


class BatchWriter(Protocol):
    """Stores one validated batch in one transaction."""

    restarts: int
    """How many times the writer had to be started again after it died."""

    async def start(self) -> None:
        """Get ready to store (raise :class:`WriterError` if that cannot be done)."""
        ...

    async def store(self, request: StoreRequest, *, urgent: bool = False) -> StoreSummary:
        """Commit ``request``; raise a transient error to have it sent again.

        An ``urgent`` batch (the fast lane's) may be stored before bulk batches handed
        over earlier; each kind keeps its order."""
        ...

    async def close(self) -> None:
        """Finish and release everything."""
        ...


class InlineWriter:
    """Stores on the caller's event loop, one batch at a time, in order."""

    def __init__(
        self,
        engine: AsyncEngine,
        handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
        *,
        fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S,
    ) -> None:
        self.restarts = 0
        self._engine = engine
        self._handlers = handlers
        self._folding = RollupFolding(engine, fold_interval_s)
        # FIFO: batches commit in the order they were handed over.
        self._turn = asyncio.Lock()

    async def start(self) -> None:
        """Nothing to start."""

    async def store(self, request: StoreRequest, *, urgent: bool = False) -> StoreSummary:
        """Store ``request`` in its own transaction once the batches before it are done.

        In order, ``urgent`` or not: the event loop's lock has no priorities, and this
        writer is for in-memory databases and small installations."""
        async with self._turn:
            async with write_transaction(self._engine) as conn:
                summary = await store_prepared(conn, request, now=utcnow(), handlers=self._handlers)
            await self._folding.after_batch()
        return summary

    async def close(self) -> None:
        """Fold what is stored into the rollups (the engine belongs to the caller)."""
        async with self._turn:
            await self._folding.fold_now()


class ProcessWriter:
    """Stores through a child store writer process, started again if it dies."""

    def __init__(
        self,
        database_url: str,
        handlers: Mapping[Channel, ChannelHandler] = DEFAULT_HANDLERS,
        *,
        log_level: int | None = None,
        fold_interval_s: float = DEFAULT_FOLD_INTERVAL_S,
    ) -> None:
        if ":memory:" in database_url or database_url.rstrip("/").endswith("sqlite+aiosqlite:"):
            raise WriterError("an in-memory SQLite database cannot be shared with a writer process")
        self.restarts = 0
        self._config = WriterConfig(
            database_url=database_url,
            log_level=log_level if log_level is not None else logging.getLogger().level,
            handlers=dict(handlers),
            fold_interval_s=fold_interval_s,
        )
        self._proc: asyncio.subprocess.Process | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[StoreSummary]] = {}
        self._ids = itertools.count(1)
        self._send_lock = asyncio.Lock()
        self._start_lock = asyncio.Lock()
        self._started_once = False
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The writer process's id while it runs."""
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    async def start(self) -> None:
        """Start the writer and wait until it is ready."""
        async with self._start_lock:
            if self._closed:
                raise WriterError("the writer is closed")
            if self.pid is not None:
                return
            if self._started_once:
                self.restarts += 1
                log.warning("starting the store writer process again (restart %d)", self.restarts)
            self._started_once = True
            await self._spawn()

    async def _spawn(self) -> None:
        try:
            proc = await child_process.spawn(
                "posfleet.broker_bridge.store_worker",
                ("hello", self._config),
                ready_within_s=WRITER_START_TIMEOUT_S,
            )
        except child_process.ChildStartError as exc:
            raise WriterError(f"the store writer process did not start: {exc}") from exc
        self._proc = proc
        self._reader_task = asyncio.create_task(
            self._read_answers(proc), name="store-writer-answers"
        )
        log.info("store writer process %d ready", proc.pid)

    async def store(self, request: StoreRequest, *, urgent: bool = False) -> StoreSummary:
        """Send ``request`` to the writer and wait for its commit (an ``urgent`` one goes
        ahead of the bulk batches still waiting there)."""
        if self.pid is None:
            await self.start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        request_id = next(self._ids)
        answer: asyncio.Future[StoreSummary] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = answer
        frame = encode_frame(("store", request_id, request, urgent))
        try:
            async with self._send_lock:
                proc.stdin.write(frame)
                await proc.stdin.drain()
        except (ConnectionError, RuntimeError) as exc:
            self._pending.pop(request_id, None)
            raise TransientStoreError(f"the store writer process is gone: {exc}") from exc
        return await answer

    async def _read_answers(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        reason = "closed its output"
        try:
            while (frame := await read_frame(proc.stdout)) is not None:
                kind, request_id, detail = frame
                answer = self._pending.pop(request_id, None)
                if answer is None or answer.done():
                    continue
                if kind == "stored":
                    answer.set_result(detail)
                elif kind == "transient":
                    answer.set_exception(TransientStoreError(detail))
                else:
                    answer.set_exception(WriterError(f"the store writer failed: {detail}"))
        except FrameError as exc:
            reason = str(exc)
            await child_process.kill(proc)
        code = await proc.wait()
        if not self._closed:
            log.error("the store writer process %d stopped (%s, exit %s)", proc.pid, reason, code)
        # Nothing pending was committed as far as we know: have those batches sent again.
        for answer in self._pending.values():
            if not answer.done():
                answer.set_exception(
                    TransientStoreError(f"the store writer process exited with code {code}")
                )
        self._pending.clear()

    async def close(self) -> None:
        """Let the writer finish what it has, then stop it (killed after a timeout)."""
        self._closed = True
        proc = self._proc
        if proc is None:
            return
        await child_process.stop(proc, within_s=WRITER_STOP_TIMEOUT_S, name="store writer")
        if self._reader_task is not None:
            await self._reader_task
