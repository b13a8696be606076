"""Ordering firmware versions (semantic versioning precedence); pure, shared with the agent.

``1.10.0 > 1.9.2``, ``2.0.0 > 2.0.0-rc.2 > 2.0.0-rc.1``, build metadata (``+b7``) is
ignored. Versions that are not strict semver (``4.2``, ``R12.3.1``) still order sensibly:
dot-separated parts compare numerically where both are numbers, as text otherwise, and a
number sorts before text.
"""

from __future__ import annotations

import functools
import re

_NUMBER = re.compile(r"^[0-9]+$")

_Part = tuple[int, int | str]


def _parts(text: str) -> tuple[_Part, ...]:
    # (0, n) for numbers and (1, s) for text, so the two never compare with each other.
    return tuple((0, int(p)) if _NUMBER.match(p) else (1, p) for p in text.split(".") if p)


@functools.total_ordering
class FirmwareVersion:
    """A parsed version string with semver precedence; equal versions hash alike."""

    __slots__ = ("_core", "_pre", "text")

    def __init__(self, text: str) -> None:
        if not text or not text.strip():
            raise ValueError("a firmware version cannot be empty")
        self.text = text
        without_build = text.split("+", 1)[0]
        core, sep, pre = without_build.partition("-")
        self._core = _parts(core)
        self._pre: tuple[_Part, ...] | None = _parts(pre) if sep else None

    def _key(self) -> tuple[tuple[_Part, ...], int, tuple[_Part, ...]]:
        # Trailing zeros do not count (1.2 == 1.2.0); a release sorts after its pre-releases.
        core = self._core
        while core and core[-1] == (0, 0):
            core = core[:-1]
        if self._pre is None:
            return (core, 1, ())
        return (core, 0, self._pre)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FirmwareVersion):
            return NotImplemented
        return self._key() == other._key()

    def __lt__(self, other: FirmwareVersion) -> bool:
        return self._key() < other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"FirmwareVersion({self.text!r})"

    def __str__(self) -> str:
        return self.text


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as version ``a`` is older than, the same as, or newer than ``b``."""
    va, vb = FirmwareVersion(a), FirmwareVersion(b)
    return (va > vb) - (va < vb)
