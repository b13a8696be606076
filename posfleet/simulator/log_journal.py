"""A simulated terminal's log journal: timestamped lines, bounded, served in chunks.

Like many real terminals it logs carelessly: some lines hold full card numbers. The agent
must scrub what it uploads; the journal hands out the text as written.
"""

from __future__ import annotations

from collections import deque
from datetime import UTC, datetime

from posfleet.agent.drivers.maintenance_actions import LogChunk

MAX_LINES = 20_000
CHUNK_BYTES = 1024


class LogJournal:
    """Append-only lines with their (terminal clock) Unix time; the oldest fall off."""

    def __init__(self, max_lines: int = MAX_LINES, chunk_bytes: int = CHUNK_BYTES) -> None:
        self.chunk_bytes = chunk_bytes
        self._lines: deque[tuple[float, str]] = deque(maxlen=max_lines)
        self._extract_key: tuple[float, float] | None = None
        self._extract = b""

    def write(self, unix_time: float, text: str) -> None:
        """Log one line (newlines inside ``text`` are flattened)."""
        self._lines.append((unix_time, text.replace("\n", " ")))

    def __len__(self) -> int:
        return len(self._lines)

    def render(self, start: float, end: float) -> bytes:
        """The lines stamped in ``[start, end)``, one per line, ISO time first."""
        out = []
        for stamp, text in self._lines:
            if start <= stamp < end:
                when = datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                out.append(f"{when} {text}\n")
        return "".join(out).encode()

    def chunk(self, start: float, end: float, offset: int) -> LogChunk:
        """One chunk of the extract; the extract is rendered afresh at offset 0 only."""
        key = (start, end)
        if offset == 0 or self._extract_key != key:
            self._extract_key, self._extract = key, self.render(start, end)
        return LogChunk(len(self._extract), self._extract[offset : offset + self.chunk_bytes])
