"""An in-memory :class:`~posfleet.agent.serial.link.Link` for unit tests of drivers.

``FakeLink(handler)`` answers every request with ``handler(request)``, the way
``httpx.MockTransport`` answers HTTP requests; a handler may raise a ``SerialLinkError``
to play a dead or misbehaving terminal. A handler that returns a list plays a terminal
that keeps talking (ZVT): the first item is the reply, the rest come from :meth:`receive`,
and whatever :meth:`send` sends goes to the handler too (its answers join the queue).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.serial.errors import ReplyTimeoutError

Handler = Callable[[Apdu], Apdu | list[Apdu]]


class FakeLink:
    """Answers requests in memory and records them in :attr:`requests` (and :attr:`sent`)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Apdu] = []
        self.sent: list[Apdu] = []
        self._queued: deque[Apdu] = deque()

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Record ``apdu`` and return the handler's reply."""
        self.requests.append(apdu)
        self._queued.clear()
        answer = self.handler(apdu)
        if isinstance(answer, Apdu):
            return answer
        if not answer:
            raise ReplyTimeoutError(reply_timeout)
        self._queued.extend(answer[1:])
        return answer[0]

    async def receive(self, *, reply_timeout: float) -> Apdu:
        """The terminal's next queued message."""
        if not self._queued:
            raise ReplyTimeoutError(reply_timeout)
        return self._queued.popleft()

    async def send(self, apdu: Apdu) -> None:
        """Record ``apdu``; anything the handler answers is queued for :meth:`receive`."""
        self.sent.append(apdu)
        answer = self.handler(apdu)
        self._queued.extend([answer] if isinstance(answer, Apdu) else answer)
