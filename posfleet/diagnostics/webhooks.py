"""Webhook notifications: JSON POSTs on open, escalate and resolve.

Delivery runs in the background so that diagnostics never waits on a slow receiver:
a bounded queue (the oldest notification is dropped, and counted, when it is full), a
token bucket that caps the rate, and per-notification retries with capped, jittered
backoff. A 4xx answer other than 408/429 is permanent: retrying cannot help.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

import aiohttp

from posfleet.async_tasks import cancel_and_wait
from posfleet.store.incidents import IncidentRecord

log = logging.getLogger(__name__)


class NotificationEvent(StrEnum):
    """Why a notification is sent."""

    OPENED = "incident.opened"
    ESCALATED = "incident.escalated"
    RESOLVED = "incident.resolved"


@dataclass(frozen=True)
class WebhookSettings:
    """Where to send, and how hard to try."""

    urls: tuple[str, ...] = ()
    max_attempts: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    rate_per_minute: float = 120.0
    burst: int = 20
    queue_size: int = 1000
    timeout_s: float = 10.0


@dataclass(slots=True)
class WebhookStats:
    """What happened to notifications so far."""

    queued: int = 0
    delivered: int = 0
    retries: int = 0
    failed: int = 0
    dropped: int = 0


def notification_body(event: NotificationEvent, incident: IncidentRecord) -> dict[str, Any]:
    """The JSON document a receiver gets."""
    return {
        "event": event.value,
        "incident": incident.model_dump(mode="json"),
    }


class _TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.capacity = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def delay(self) -> float:
        """Take a token; how long to wait before using it."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        self.tokens -= 1.0
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class WebhookNotifier:
    """Sends notifications to every configured URL; an async context manager."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self.stats = WebhookStats()
        self._pending: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._bucket = _TokenBucket(settings.rate_per_minute / 60.0, settings.burst)
        self._http: aiohttp.ClientSession | None = None
        self._worker: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    async def __aenter__(self) -> Self:
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        self._http = aiohttp.ClientSession(timeout=timeout)
        self._worker = asyncio.create_task(self._deliver_forever(), name="webhook-notifier")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await cancel_and_wait(self._worker)
        if self._http is not None:
            await self._http.close()

    def notify(self, event: NotificationEvent, incident: IncidentRecord) -> None:
        """Queue a notification; never blocks, never raises."""
        if not self.settings.urls:
            return
        if len(self._pending) >= self.settings.queue_size:
            self._pending.popleft()
            self.stats.dropped += 1
        self._pending.append(notification_body(event, incident))
        self.stats.queued += 1
        self._idle.clear()
        self._wake.set()

    async def drain(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (part of the API)
        """Wait until every queued notification is delivered or given up (tests, shutdown)."""
        async with asyncio.timeout(timeout):
            await self._idle.wait()

    async def _deliver_forever(self) -> None:
        while True:
            if not self._pending:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            body = self._pending.popleft()
            wait = self._bucket.delay()
            if wait > 0:
                await asyncio.sleep(wait)
            for url in self.settings.urls:
                await self._deliver(url, body)

    async def _deliver(self, url: str, body: dict[str, Any]) -> None:
        assert self._http is not None
        delivery = await post_json(self._http, self.settings, url, body, what=str(body["event"]))
        self.stats.retries += delivery.retries
        if delivery.delivered:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1


@dataclass(frozen=True, slots=True)
class Delivery:
    """How one POST to one webhook went."""

    delivered: bool
    retries: int


async def post_json(
    http: aiohttp.ClientSession,
    settings: WebhookSettings,
    url: str,
    body: dict[str, Any],
    *,
    what: str,
) -> Delivery:
    """POST ``body`` to ``url``, retrying with jittered backoff as ``settings`` say.

    A 4xx other than 408/429 is final at once; anything else is tried again up to
    ``max_attempts``. Giving up is logged with ``what`` was sent.
    """
    delay = settings.backoff_initial_s
    for attempt in range(1, settings.max_attempts + 1):
        try:
            async with http.post(url, json=body) as response:
                if response.status < 300:
                    return Delivery(delivered=True, retries=attempt - 1)
                permanent = 400 <= response.status < 500 and response.status not in (408, 429)
                reason = f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            permanent, reason = False, str(exc) or type(exc).__name__
        if permanent or attempt == settings.max_attempts:
            log.warning("webhook %s gave up on %s: %s", url, what, reason)
            return Delivery(delivered=False, retries=attempt - 1)
        await asyncio.sleep(random.uniform(delay / 2, delay))
        delay = min(delay * 2, settings.backoff_max_s)
    return Delivery(delivered=False, retries=0)  # max_attempts 0: nothing was tried
