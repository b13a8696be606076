"""The bounded hand-off between paho's thread and the asyncio consumer."""

from __future__ import annotations

import asyncio
import threading

import pytest

from posfleet.broker_bridge.handoff import Handoff


async def test_a_producer_thread_waits_for_room_and_nothing_is_lost() -> None:
    handoff: Handoff[int] = Handoff(capacity=3)
    handoff.bind(asyncio.get_running_loop())
    most_waiting = 0

    def produce() -> None:
        for n in range(200):
            assert handoff.put(n)
        handoff.close()

    producer = threading.Thread(target=produce)
    producer.start()
    taken: list[int] = []
    while batch := await handoff.take(2):
        most_waiting = max(most_waiting, len(handoff) + len(batch))
        taken += batch
    producer.join(5)

    assert taken == list(range(200))
    assert most_waiting <= 3


async def test_close_releases_a_blocked_producer_and_ends_the_consumer() -> None:
    handoff: Handoff[str] = Handoff(capacity=1)
    handoff.bind(asyncio.get_running_loop())
    assert handoff.put("first")
    outcome: list[bool] = []
    blocked = threading.Thread(target=lambda: outcome.append(handoff.put("second")))
    blocked.start()
    await asyncio.sleep(0)  # let the thread reach the full buffer
    handoff.close()
    await asyncio.to_thread(blocked.join, 5)

    assert outcome == [False]
    assert await handoff.take(10) == ["first"]  # what was queued is still delivered
    assert await handoff.take(10) == []


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Handoff(0)
