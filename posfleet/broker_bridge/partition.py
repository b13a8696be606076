"""A share of the fleet by terminal id: which central instance serves which terminals.

The rule engine keeps each terminal's state (rule phases, windows, counters, its last
report) in the memory of one instance, so every message of a terminal must reach the
same instance. A broker that routes a shared subscription by client id or topic (EMQX's
``hash_clientid``) does that; Mosquitto's shared subscriptions go round robin, message
by message, which would split a terminal's reports between engines that each see half
of them (an incident opened by one instance would wait for a report the other got).

With a partition ``K/N`` instead, each of the N instances subscribes to every terminal's
messages and keeps those of the terminals whose id hashes to its share ``K``; the others
it acknowledges unread. The hash is CRC-32 of the terminal id, the same on every machine
and every version, so a terminal keeps its instance until N changes.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass

_SPEC = re.compile(r"^(\d{1,4})/(\d{1,4})$")


@dataclass(frozen=True, slots=True)
class Partition:
    """Share ``index`` (1-based) of ``count`` equal shares of the fleet."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.index <= self.count:
            raise ValueError(
                f"partition {self.index}/{self.count}: the share must be 1 to {self.count}"
            )

    @classmethod
    def parse(cls, spec: str) -> Partition:
        """``"2/3"``: the second of three shares; a clear ``ValueError`` otherwise."""
        match = _SPEC.match(spec.strip())
        if match is None:
            raise ValueError(f"partition {spec!r}: write it as K/N, e.g. 1/2 and 2/2")
        return cls(int(match[1]), int(match[2]))

    def owns(self, terminal_id: str) -> bool:
        """Whether this share serves ``terminal_id``."""
        return zlib.crc32(terminal_id.encode()) % self.count == self.index - 1

    def owns_topic(self, topic: str) -> bool:
        """Whether this share serves the terminal of ``pos/v1/<terminal>/...`` (a topic
        without a terminal goes to the first share, which dead-letters it)."""
        parts = topic.split("/", 3)
        if len(parts) < 3:
            return self.index == 1
        return self.owns(parts[2])

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def check_one_split(share_group: str | None, partition: str | None) -> None:
    """Refuse a bad ``K/N``, and a ``share_group`` and a ``partition`` set together (each
    splits the fleet its own way), with a ``ValueError`` that says what to set."""
    if partition is None:
        return
    Partition.parse(partition)
    if share_group is not None:
        raise ValueError(
            "share_group and partition both split the fleet: set one of them "
            "(partition on Mosquitto, whose shared subscriptions go round robin)"
        )
