"""Slows down password guessing, per account and per client address, in the database.

A brake, never a lock: after a few failed logins for one account, or from one client
address, the next attempt is answered only after a delay that doubles with each further
failure, up to a cap. Many usernames tried from one address slow that address down; the
real user, from another address, is at most briefly slowed by the failures against their
own account. The counts are rows (:mod:`posfleet.store.login_attempts`), so a restart or
a second instance remembers them.

The client address is the peer's, or the ``X-Forwarded-For`` entry a trusted proxy
added (the right-most address that is not itself a trusted proxy) when the peer is one
of ``trusted_proxies``; anyone else's ``X-Forwarded-For`` is ignored, as a client could
otherwise pick a new address for every guess. An IPv6 client counts by its /64, the
block one subscriber usually holds.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.store.login_attempts import (
    MAX_SUBJECT_CHARS,
    AttemptKind,
    Subject,
    blocked_until,
    clear_failures,
    forget_stale,
    record_failure,
)

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
UNKNOWN_ADDRESS = "unknown"


@dataclass(frozen=True, slots=True)
class DelayPolicy:
    """How long a subject waits after ``failures`` failed logins in a row."""

    free_failures: int
    """Failures allowed before any delay (typos happen)."""
    first_delay: timedelta
    max_delay: timedelta

    def delay_after(self, failures: int) -> timedelta | None:
        """The wait after the ``failures``-th failure: None, then doubling up to the cap."""
        if failures < self.free_failures:
            return None
        doublings = min(failures - self.free_failures, 30)
        delay: timedelta = min(self.first_delay * (1 << doublings), self.max_delay)
        return delay


ACCOUNT_POLICY = DelayPolicy(5, timedelta(seconds=1), timedelta(seconds=30))
"""Per account: a short cap, so that an attack on one account never keeps its owner out."""
ADDRESS_POLICY = DelayPolicy(10, timedelta(seconds=1), timedelta(minutes=10))
"""Per client address: one address guessing many usernames is slowed to a crawl."""
WINDOW = timedelta(minutes=15)
"""Failures older than this (with no wait left) are forgotten."""


@dataclass(frozen=True, slots=True)
class Throttled:
    """An attempt held back: which limit holds it and for how long."""

    kind: AttemptKind
    wait: timedelta

    @property
    def retry_after_s(self) -> int:
        """Whole seconds until the next attempt is checked (for ``Retry-After``)."""
        return max(1, math.ceil(self.wait.total_seconds()))


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``10.0.0.1``, ``10.0.0.0/8`` or ``::1`` as networks; a ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address or network") from None
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def address_subject(address: ipaddress.IPv4Address | ipaddress.IPv6Address | None) -> str:
    """The throttle's name for a client address: IPv4 as it is, IPv6 by its /64."""
    if address is None:
        return UNKNOWN_ADDRESS
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def account_subject(username: str) -> str:
    """The throttle's name for an account: the username as typed, folded and bounded."""
    return username.strip().casefold()[:MAX_SUBJECT_CHARS]


class LoginThrottle:
    """Decides whether a login attempt is checked now, and counts the failures."""

    def __init__(
        self,
        *,
        trusted_proxies: Iterable[Network] = (),
        clock: Callable[[], datetime] = utcnow,
        account: DelayPolicy = ACCOUNT_POLICY,
        address: DelayPolicy = ADDRESS_POLICY,
        window: timedelta = WINDOW,
    ) -> None:
        self.trusted_proxies = tuple(trusted_proxies)
        self.clock = clock
        self._policies = {AttemptKind.ACCOUNT: account, AttemptKind.ADDRESS: address}
        self.window = window
        self.throttled: Counter[AttemptKind] = Counter()
        """Attempts this instance held back, by the limit that held them (for /metrics)."""

    def _trusted(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address.version == n.version and address in n for n in self.trusted_proxies)

    def client_address(self, request: web.Request) -> str:
        """The address the throttle counts ``request`` under (see the module doc)."""
        peer = _ip(request.remote or "")
        if peer is None or not self._trusted(peer):
            return address_subject(peer)
        headers = request.headers.getall("X-Forwarded-For", [])
        hops = [hop for value in headers for hop in value.split(",")]
        for hop in reversed(hops):
            found = _ip(hop)
            if found is None:
                break  # a garbled header: count the proxy itself rather than guess
            if not self._trusted(found):
                return address_subject(found)
        return address_subject(peer)

    @staticmethod
    def _subjects(username: str, address: str) -> tuple[Subject, Subject]:
        return (AttemptKind.ACCOUNT, account_subject(username)), (AttemptKind.ADDRESS, address)

    async def check(
        self, conn: AsyncConnection, username: str, address: str, now: datetime
    ) -> Throttled | None:
        """Whether to hold this attempt back (and count it if so), or None to check it."""
        waits = await blocked_until(conn, self._subjects(username, address), now)
        if not waits:
            return None
        kind, until = max(waits.items(), key=lambda item: item[1])
        self.throttled[kind] += 1
        log.warning(
            "login throttled (%s): user %r from %s, next attempt checked in %.0f s",
            kind.value,
            account_subject(username),
            address,
            (until - now).total_seconds(),
        )
        return Throttled(kind, until - now)

    async def failed(
        self, conn: AsyncConnection, username: str, address: str, now: datetime
    ) -> Throttled | None:
        """Count a failed login; the wait it starts, if any."""
        waits = []
        for subject in self._subjects(username, address):
            _, until = await record_failure(
                conn,
                subject,
                now,
                window=self.window,
                delay_after=self._policies[subject[0]].delay_after,
            )
            if until is not None:
                waits.append(Throttled(subject[0], until - now))
        await forget_stale(conn, now, self.window)
        return max(waits, key=lambda t: t.wait, default=None)

    async def succeeded(self, conn: AsyncConnection, username: str) -> None:
        """Forget the account's failures; the address's stay (an attacker with an account
        of their own could otherwise reset their address by logging in)."""
        await clear_failures(conn, (AttemptKind.ACCOUNT, account_subject(username)))
