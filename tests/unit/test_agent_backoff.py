"""Reconnect delays are capped and jittered, and start small again after a good connection."""

from __future__ import annotations

import random

import pytest

from posfleet.agent.backoff import Backoff


def test_delays_grow_to_the_cap_and_never_beyond() -> None:
    backoff = Backoff(base_s=1, cap_s=30, rng=random.Random(1))
    delays = [backoff.next_delay() for _ in range(200)]
    assert all(0 < d <= 30 for d in delays)
    assert max(delays[:1]) <= 1
    assert max(delays[50:]) > 20


def test_a_fleet_does_not_reconnect_in_lockstep() -> None:
    fleet = [Backoff(base_s=1, cap_s=60, rng=random.Random(i)) for i in range(100)]
    for agent in fleet:
        for _ in range(6):
            agent.next_delay()
    sixth = [agent.next_delay() for agent in fleet]
    assert len({round(d, 1) for d in sixth}) > 80
    assert max(sixth) - min(sixth) > 30


def test_reset_starts_from_the_smallest_window() -> None:
    backoff = Backoff(base_s=2, cap_s=60)
    for _ in range(10):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() <= 2


def test_invalid_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="base_s"):
        Backoff(base_s=10, cap_s=1)
