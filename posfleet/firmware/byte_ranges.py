"""HTTP ``Range`` / ``If-Range`` decisions for one file of known size (RFC 9110, 14); pure.

Only a single byte range is served as 206: that is all a resuming downloader asks for.
A header this module cannot use in good faith (another unit, several ranges, bad syntax)
is ignored as RFC 9110 allows, so the whole image is sent with 200.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(Exception):
    """The range starts at or past the end of the file: answer 416."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the range is beyond the end of the {size}-byte image")
        self.size = size


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes ``start`` to ``end`` inclusive of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.end - self.start + 1

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` header value of a 206 answer."""
        return f"bytes {self.start}-{self.end}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range ``header`` asks for, or None to send the whole file.

    Raises :class:`RangeNotSatisfiable` for a range that begins past the end (or an
    empty suffix), which is answered 416 with ``Content-Range: bytes */size``.
    """
    if header is None:
        return None
    unit, _, specs = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in specs:
        return None
    match = _SPEC.match(specs)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1, size)
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(end, size - 1), size)


def if_range_allows(if_range: str | None, etag: str, last_modified: str) -> bool:
    """True if a ``Range`` may be honoured: no ``If-Range``, or it names this very file.

    An entity tag must match strongly (``W/`` never does); a date must equal
    ``Last-Modified`` exactly, the only date comparison RFC 9110 treats as strong.
    """
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        return value == etag
    return value == last_modified


def etag_listed(header: str | None, etag: str) -> bool:
    """True if ``If-Match``/``If-None-Match`` ``header`` lists ``etag`` (or is ``*``)."""
    if header is None:
        return False
    candidates = [part.strip() for part in header.split(",")]
    return "*" in candidates or any(c.removeprefix("W/") == etag for c in candidates)
