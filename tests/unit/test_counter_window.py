"""A counter window's growth, against a reference that keeps every sample."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from posfleet.diagnostics.counter_window import CounterWindow

T0 = datetime(2026, 6, 1, tzinfo=UTC)
WINDOW = timedelta(minutes=5)


def _reference(samples: list[tuple[datetime, float]], now: datetime) -> float:
    """Growth over the window with every sample kept: from the newest sample at or
    before the window's start (the baseline) on, a drop counting as a restart."""
    start = now - WINDOW
    first = max((i for i, (at, _) in enumerate(samples) if at <= start), default=0)
    total, previous = 0.0, None
    for at, value in samples[first:]:
        if at > now:
            break
        if previous is not None:
            total += value - previous if value >= previous else value
        previous = value
    return total


@given(
    steps=st.lists(
        st.tuples(st.integers(1, 120), st.sampled_from([0, 0, 0, 1, 5, -3, -100])),
        min_size=1,
        max_size=40,
    ),
    later=st.integers(0, 600),
)
def test_growth_is_the_same_as_with_every_sample_kept(
    steps: list[tuple[int, int]], later: int
) -> None:
    window = CounterWindow(WINDOW)
    kept: list[tuple[datetime, float]] = []
    at, value = T0, 100.0
    for seconds, change in steps:
        at += timedelta(seconds=seconds)
        value = max(0.0, value + change)  # a negative step below zero: a restart
        window.add(at, value)
        kept.append((at, value))
        assert window.increase(at) == _reference(kept, at)
        assert window.last == value
    now = at + timedelta(seconds=later)
    assert window.increase(now) == _reference(kept, now)


def test_a_counter_that_never_moves_keeps_one_sample_and_grows_by_nothing() -> None:
    window = CounterWindow(WINDOW)
    for n in range(100):
        window.add(T0 + timedelta(seconds=10 * n), 42.0)
    assert len(window) == 1 and window.increase(T0 + timedelta(seconds=990)) == 0.0
    window.add(T0 + timedelta(seconds=1000), 45.0)
    assert window.increase(T0 + timedelta(seconds=1000)) == 3.0
