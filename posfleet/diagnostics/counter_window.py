"""The growth of a counter over a sliding window, surviving resets (reboots)."""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta


class CounterWindow:
    """Samples of one cumulative counter; :meth:`increase` over the last ``window``.

    A sample lower than the one before means the counter restarted from zero (the
    terminal rebooted): its whole value counts as growth, as in Prometheus' increase().
    One sample older than the window is kept as the baseline, so growth between it and
    the first sample inside the window is not lost.
    """

    __slots__ = ("_samples", "window")

    def __init__(self, window: timedelta) -> None:
        self.window = window
        self._samples: deque[tuple[datetime, float]] = deque()

    def add(self, at: datetime, value: float) -> None:
        """Record ``value`` measured at ``at`` (samples arrive in time order).

        A value equal to the newest sample's is not kept: between equal samples the
        counter grew by nothing, and whichever of them ends up the baseline has the same
        value, so :meth:`increase` is the same, and a counter that rarely moves keeps
        only the points where it did.
        """
        samples = self._samples
        if samples and samples[-1][1] == value:
            return
        samples.append((at, value))
        self._prune(at)

    def increase(self, now: datetime) -> float:
        """How much the counter grew between ``now - window`` and ``now``."""
        self._prune(now)
        total = 0.0
        previous: float | None = None
        for _, value in self._samples:
            if previous is not None:
                total += value - previous if value >= previous else value
            previous = value
        return total

    @property
    def last(self) -> float | None:
        """The newest sample's value."""
        return self._samples[-1][1] if self._samples else None

    def __len__(self) -> int:
        return len(self._samples)

    def _prune(self, now: datetime) -> None:
        start = now - self.window
        samples = self._samples
        # Drop while the *second* sample is already at or before the window start: the
        # first one is then no longer needed as a baseline.
        while len(samples) >= 2 and samples[1][0] <= start:
            samples.popleft()
