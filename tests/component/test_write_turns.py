"""Turns at SQLite's write lock: the store writer waits for the other writers of the file."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store import create_engine
from posfleet.store.write_turns import SUFFIX, give_way, writing


async def test_the_writer_waits_while_another_write_is_under_way(
    sqlite_engine: AsyncEngine,
) -> None:
    # Another process's engine on the same file behaves the same: the lock is the file's.
    writer_engine = create_engine(str(sqlite_engine.url))
    try:
        entered, released = asyncio.Event(), asyncio.Event()
        order: list[str] = []

        async def incident_write() -> None:
            async with writing(sqlite_engine):
                order.append("incident")
                entered.set()
                await released.wait()
            order.append("incident committed")

        holder = asyncio.create_task(incident_write())
        await asyncio.wait_for(entered.wait(), timeout=10)  # the incident write goes first
        waiting = asyncio.create_task(give_way(writer_engine))
        done, _ = await asyncio.wait({waiting}, timeout=0.3)
        assert not done, "the batch went ahead of a write under way"
        released.set()
        await asyncio.wait_for(waiting, timeout=10)
        await holder
        assert order == ["incident", "incident committed"]
        # Nobody writing: the writer's turn is immediate.
        await asyncio.wait_for(give_way(writer_engine), timeout=1)
    finally:
        await writer_engine.dispose()


async def test_concurrent_writes_of_one_process_share_the_turn(sqlite_engine: AsyncEngine) -> None:
    async with writing(sqlite_engine), writing(sqlite_engine):
        pass
    async with writing(sqlite_engine):
        waiting = asyncio.create_task(give_way(sqlite_engine))
        done, _ = await asyncio.wait({waiting}, timeout=0.2)
        assert not done  # the inner release did not hand the turn over early
    await asyncio.wait_for(waiting, timeout=10)


async def test_a_write_cancelled_while_the_writer_has_its_turn_does_not_keep_the_lock(
    sqlite_engine: AsyncEngine,
) -> None:
    database = sqlite_engine.url.database
    assert database is not None
    # The store writer's turn, taken and held here (as another process would).
    turn = os.open(database + SUFFIX, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(turn, fcntl.LOCK_EX)
        entered = asyncio.Event()

        async def staff_action() -> None:
            async with writing(sqlite_engine):
                entered.set()

        action = asyncio.create_task(staff_action())
        done, _ = await asyncio.wait({action}, timeout=0.2)
        assert not done and not entered.is_set(), "it waits for the writer's turn"
        action.cancel()  # the staff member's request went away meanwhile
        with contextlib.suppress(asyncio.CancelledError):
            await action
        fcntl.flock(turn, fcntl.LOCK_UN)
    finally:
        os.close(turn)
    # The writer's next turn is not held up by the cancelled transaction.
    await asyncio.wait_for(give_way(sqlite_engine), timeout=10)
    async with writing(sqlite_engine):
        pass
