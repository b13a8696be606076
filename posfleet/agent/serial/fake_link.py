"""An in-memory :class:`~posfleet.agent.serial.link.Link` for unit tests of drivers.

``FakeLink(handler)`` answers every request with ``handler(request)``, the way
``httpx.MockTransport`` answers HTTP requests; a handler may raise a ``SerialLinkError``
to play a dead or misbehaving terminal.
"""

from __future__ import annotations

from collections.abc import Callable

from posfleet.agent.serial.apdu import Apdu

Handler = Callable[[Apdu], Apdu]


class FakeLink:
    """Answers requests in memory and records them in :attr:`requests`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[Apdu] = []

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """Record ``apdu`` and return the handler's reply."""
        self.requests.append(apdu)
        return self.handler(apdu)
