"""MQTT topic names of contract v1, built and parsed here and nowhere else.

Every topic is ``pos/v1/<terminal_id>/<channel>``. A terminal id matches
``[A-Za-z0-9_-]{1,64}``: no ``/``, ``+``, ``#`` or ``$``, so an id can never widen a
subscription filter or escape its own subtree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from posfleet.contract.errors import TopicError

PREFIX = "pos/v1"
"""Topic prefix; the ``v1`` is the contract's major version."""

TERMINAL_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_TERMINAL_ID_RE = re.compile(TERMINAL_ID_PATTERN)


class Channel(StrEnum):
    """The topic suffix below a terminal's prefix; each carries one payload model."""

    STATE = "state"
    INVENTORY = "inventory"
    HEALTH = "health"
    EVENT = "event"
    CMD = "cmd"
    CMD_RESULT = "cmd/result"
    FW_OFFER = "fw/offer"
    FW_STATUS = "fw/status"

    @property
    def uplink(self) -> bool:
        """True for channels a terminal publishes (agent -> centre)."""
        return self not in (Channel.CMD, Channel.FW_OFFER)

    @property
    def retained(self) -> bool:
        """True for channels published with the MQTT retain flag."""
        return self in (Channel.STATE, Channel.INVENTORY)


UPLINK_CHANNELS: tuple[Channel, ...] = tuple(c for c in Channel if c.uplink)
DOWNLINK_CHANNELS: tuple[Channel, ...] = tuple(c for c in Channel if not c.uplink)
QOS = 1
"""Every message of the contract travels with QoS 1."""


def validate_terminal_id(terminal_id: str) -> str:
    """Return ``terminal_id`` unchanged, or raise :class:`TopicError` if it is not valid."""
    if not isinstance(terminal_id, str) or not _TERMINAL_ID_RE.match(terminal_id):
        raise TopicError(f"invalid terminal id {terminal_id!r}: must match {TERMINAL_ID_PATTERN}")
    return terminal_id


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed, validated contract topic."""

    terminal_id: str
    channel: Channel

    def __post_init__(self) -> None:
        validate_terminal_id(self.terminal_id)

    def __str__(self) -> str:
        return f"{PREFIX}/{self.terminal_id}/{self.channel.value}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        """Parse a concrete topic name; raise :class:`TopicError` if it is not in the contract."""
        prefix = PREFIX + "/"
        if not topic.startswith(prefix):
            raise TopicError(f"topic {topic!r} is not under {PREFIX}/")
        terminal_id, sep, suffix = topic[len(prefix) :].partition("/")
        if not sep:
            raise TopicError(f"topic {topic!r} has no channel")
        try:
            channel = Channel(suffix)
        except ValueError:
            raise TopicError(f"topic {topic!r} has unknown channel {suffix!r}") from None
        return cls(terminal_id, channel)


def topic(terminal_id: str, channel: Channel) -> str:
    """Build the topic name for ``channel`` of ``terminal_id``."""
    return str(Topic(terminal_id, channel))


def terminal_filter(terminal_id: str) -> str:
    """The filter matching every topic of one terminal (``pos/v1/<id>/#``)."""
    return f"{PREFIX}/{validate_terminal_id(terminal_id)}/#"


def channel_filter(channel: Channel) -> str:
    """The filter matching ``channel`` of every terminal (``pos/v1/+/<channel>``)."""
    return f"{PREFIX}/+/{channel.value}"


def uplink_filters(share_group: str | None = None) -> list[str]:
    """Subscription filters for everything terminals publish.

    With ``share_group`` the filters are MQTT v5 shared subscriptions
    (``$share/<group>/...``) so several central instances split the load.
    """
    filters = [channel_filter(c) for c in UPLINK_CHANNELS]
    if share_group is None:
        return filters
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", share_group):
        raise TopicError(f"invalid share group {share_group!r}")
    return [f"$share/{share_group}/{f}" for f in filters]


def all_terminals_filter() -> str:
    """The filter matching every contract topic of every terminal."""
    return f"{PREFIX}/#"
