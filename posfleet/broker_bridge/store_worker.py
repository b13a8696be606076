"""The store writer process: stores the ingest's validated batches.

Started by :class:`~posfleet.broker_bridge.batch_writers.ProcessWriter` as
``python -m posfleet.broker_bridge.store_worker``, it reads
:class:`~posfleet.broker_bridge.ingest_batch.StoreRequest` frames on stdin and answers
on stdout (see :mod:`~posfleet.broker_bridge.worker_frames`), so that the database work
runs on a second core, beside the process that speaks MQTT, validates and runs
diagnostics. A batch the parent marks urgent (the ingest's fast lane: fault events,
state, command results) is stored before the bulk batches that came before it, so it
waits for at most the batch being stored. It commits each batch before it answers; the
parent acknowledges to the broker only then. Between batches it folds the stored
samples into the hourly rollups once a minute (see
:mod:`~posfleet.broker_bridge.rollup_folding`), and once more when it stops.

It stops when its stdin closes: when the parent closes it at shutdown, or when the
parent dies (even by SIGKILL), so it never outlives the ingest. SIGINT and SIGTERM are
ignored: Ctrl-C and ``systemctl stop`` reach the whole process group, and the parent
decides when the writer has finished.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import traceback
from collections import deque
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.ingest_batch import StoreRequest, is_transient, store_prepared
from posfleet.broker_bridge.rollup_folding import RollupFolding
from posfleet.broker_bridge.worker_frames import (
    FrameError,
    WriterConfig,
    read_frame,
    write_frame_fd,
)
from posfleet.child_process import child_logging, child_stdio
from posfleet.contract import utcnow
from posfleet.gc_tuning import tune_gc
from posfleet.store.engine import create_engine, write_transaction
from posfleet.store.wal_checkpoints import WalCheckpointer, truncate_log
from posfleet.store.write_turns import give_way

log = logging.getLogger("posfleet.store_writer")


async def _stdin_reader() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    return reader


async def serve(frames_fd: int) -> None:
    """Answer the hello, then store batches until stdin closes."""
    reader = await _stdin_reader()
    hello = await read_frame(reader)
    if hello is None:
        return  # the parent gave up before saying hello
    if not (
        isinstance(hello, tuple) and hello[0] == "hello" and isinstance(hello[1], WriterConfig)
    ):
        write_frame_fd(frames_fd, ("failed", f"expected a hello frame, got {type(hello).__name__}"))
        return
    config: WriterConfig = hello[1]
    child_logging(config.log_level, "store-writer")
    try:
        engine = create_engine(config.database_url, sqlite_auto_checkpoint=False)
    except Exception as exc:
        write_frame_fd(frames_fd, ("failed", f"{type(exc).__name__}: {exc}"))
        return
    with _checkpoints(engine) as checkpoints:
        write_frame_fd(frames_fd, ("ready",))
        await _serve_batches(reader, frames_fd, engine, config, checkpoints)


def _checkpoints(engine: AsyncEngine) -> contextlib.AbstractContextManager[WalCheckpointer | None]:
    """A WAL checkpointer for a SQLite file (commits here never checkpoint themselves)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database:
        return contextlib.nullcontext()
    return WalCheckpointer(Path(database))


async def _serve_batches(
    reader: asyncio.StreamReader,
    frames_fd: int,
    engine: AsyncEngine,
    config: WriterConfig,
    checkpoints: WalCheckpointer | None,
) -> None:
    arrived = _Arrivals()

    async def receive() -> None:
        # Read every frame as it comes, so that an urgent one (the fast lane's) is seen
        # while bulk batches still wait their turn.
        try:
            while (frame := await read_frame(reader)) is not None:
                arrived.add(frame)
        except FrameError as exc:
            log.error("stopping: %s", exc)
        finally:
            arrived.close()

    folding = RollupFolding(engine, config.fold_interval_s)
    try:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(receive())
            while (frame := await arrived.next()) is not None:
                _, request_id, request, _urgent = frame
                # Another writer of the SQLite file (an incident, a staff action) waits:
                # it goes first, or it could wait behind the whole backlog.
                await give_way(engine)
                write_frame_fd(frames_fd, await _store(engine, request_id, request, config))
                # Between batches, after the answer: the ingest acknowledges meanwhile.
                await folding.after_batch()
                if checkpoints is not None and checkpoints.log_is_large():
                    await truncate_log(engine)
        await folding.fold_now()
    finally:
        await engine.dispose()


class _Arrivals:
    """Frames read from the parent, urgent ones first, each kind in arrival order."""

    def __init__(self) -> None:
        self._urgent: deque[tuple[Any, ...]] = deque()
        self._bulk: deque[tuple[Any, ...]] = deque()
        self._changed = asyncio.Event()
        self._closed = False

    def add(self, frame: tuple[Any, ...]) -> None:
        """One ``("store", id, request, urgent)`` frame."""
        (self._urgent if frame[3] else self._bulk).append(frame)
        self._changed.set()

    def close(self) -> None:
        """No more frames: :meth:`next` returns None once the queues are empty."""
        self._closed = True
        self._changed.set()

    async def next(self) -> tuple[Any, ...] | None:
        """The next frame to store."""
        while True:
            if self._urgent:
                return self._urgent.popleft()
            if self._bulk:
                return self._bulk.popleft()
            if self._closed:
                return None
            self._changed.clear()
            await self._changed.wait()


async def _store(
    engine: AsyncEngine,
    request_id: int,
    request: StoreRequest,
    config: WriterConfig,
) -> tuple[object, ...]:
    try:
        async with write_transaction(engine) as conn:
            summary = await store_prepared(conn, request, now=utcnow(), handlers=config.handlers)
    except Exception as exc:
        if is_transient(exc):
            return ("transient", request_id, f"{type(exc).__name__}: {exc}")
        log.exception("storing batch %d failed", request_id)
        return ("error", request_id, "".join(traceback.format_exception_only(exc)).strip())
    return ("stored", request_id, summary)


def main() -> None:
    """Entry point of ``python -m posfleet.broker_bridge.store_worker``."""
    frames_fd = child_stdio()
    tune_gc()
    asyncio.run(serve(frames_fd))


if __name__ == "__main__":
    main()
