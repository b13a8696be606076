"""Counts of refused requests, so an operator sees bad clients and guessing attempts."""

from __future__ import annotations

import logging
from collections import Counter

log = logging.getLogger(__name__)


class Rejections:
    """How many requests the dashboard refused, by reason code (``invalid_parameter`` ...)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()

    def count(self, code: str, detail: str = "") -> None:
        """Count one refused request, and log why at debug level."""
        self._counts[code] += 1
        log.debug("request refused (%s): %s", code, detail)

    def snapshot(self) -> dict[str, int]:
        """The counts so far, by reason code."""
        return dict(self._counts)
