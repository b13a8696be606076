"""The agent's last check before a publish: no payload above the contract's limit.

The broker disconnects a client that sends a packet above its ``max_packet_size``
(posfleet's Mosquitto configuration), and paho would resend the same QoS 1 message after
every reconnect: one oversized report would keep the terminal offline for good. The
uplink therefore refuses such a payload itself, logs what it was, and counts it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from posfleet.agent.errors import UplinkError
from posfleet.contract import MAX_PAYLOAD_BYTES, Channel

log = logging.getLogger(__name__)


class PayloadTooLargeError(UplinkError):
    """A payload above :data:`posfleet.contract.MAX_PAYLOAD_BYTES`; it was never sent."""

    def __init__(self, channel: Channel, size: int, limit: int) -> None:
        super().__init__(
            f"{channel.value} payload of {size} bytes exceeds the contract's limit of "
            f"{limit} bytes; not published"
        )
        self.channel = channel
        self.size = size
        self.limit = limit


@dataclass(slots=True)
class PublishGuard:
    """Refuses oversized payloads for one terminal and counts them in :attr:`refused`."""

    terminal_id: str
    limit: int = MAX_PAYLOAD_BYTES
    refused: int = 0

    def check(self, channel: Channel, payload: bytes) -> PayloadTooLargeError | None:
        """None if ``payload`` may be published; else the error, logged and counted."""
        if len(payload) <= self.limit:
            return None
        self.refused += 1
        error = PayloadTooLargeError(channel, len(payload), self.limit)
        log.error("%s: %s (%d refused so far)", self.terminal_id, error, self.refused)
        return error
