"""Slows down password guessing against one account.

In memory and per process: it is a brake on online guessing, not an account lock (which
an attacker could use to lock staff out for good).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from datetime import datetime, timedelta


class LoginThrottle:
    """After ``max_failures`` failed logins for a username within ``window``, refuse more."""

    def __init__(
        self,
        max_failures: int = 10,
        window: timedelta = timedelta(minutes=15),
        max_tracked: int = 10_000,
    ) -> None:
        self.max_failures = max_failures
        self.window = window
        # Usernames come from anonymous requests: bound the memory they can take.
        self._max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[datetime]] = OrderedDict()

    def _recent(self, username: str, now: datetime) -> deque[datetime]:
        failures = self._failures.get(username, deque())
        while failures and now - failures[0] >= self.window:
            failures.popleft()
        return failures

    def retry_after(self, username: str, now: datetime) -> timedelta | None:
        """How long until ``username`` may try again, or None if it may try now."""
        failures = self._recent(username, now)
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window - now

    def failed(self, username: str, now: datetime) -> None:
        """Count a failed login for ``username``."""
        failures = self._recent(username, now)
        failures.append(now)
        self._failures[username] = failures
        self._failures.move_to_end(username)
        while len(self._failures) > self._max_tracked:
            self._failures.popitem(last=False)

    def succeeded(self, username: str) -> None:
        """Forget the failures of ``username`` after a successful login."""
        self._failures.pop(username, None)
