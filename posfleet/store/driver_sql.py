"""Hand-written SQL for the ingest's hot statements, run at the driver level.

SQLAlchemy Core costs about 20 us of Python per row of an ``executemany`` (bind
processors, parameter dictionaries), more than the database takes to store the row. The
few statements that run once per report therefore go straight to the driver with
positional tuples, through :meth:`AsyncConnection.exec_driver_sql`, which keeps them in
the caller's transaction. Everything else stays in SQLAlchemy Core.

Both backends take numbered placeholders (``?3`` on SQLite, ``$3`` on PostgreSQL), so
one statement text serves both once its sigil is chosen. Values must already be in the
column's storage form: :meth:`DriverSql.timestamp` gives the one for ``UtcDateTime``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.upsert import UnsupportedDatabaseError

MAX_ROWS_PER_STATEMENT = 1000
"""Rows per multi-row ``VALUES``: well inside both backends' limit of bound parameters."""

_CHUNK_SIZES = (MAX_ROWS_PER_STATEMENT, 512, 256, 128, 64, 32, 16, 8, 4, 2, 1)

_T = TypeVar("_T")


def chunks(rows: Sequence[_T]) -> Iterator[Sequence[_T]]:
    """``rows`` in pieces of 1000, 512, 256, 128 ... rows, largest first.

    A statement's text depends on its row count, and the driver keeps a prepared
    statement per text: with sizes from a short list, every batch reuses them instead of
    parsing a statement of thousands of parameters anew. A full batch of the default
    size is one statement.
    """
    first = 0
    for size in _CHUNK_SIZES:
        while len(rows) - first >= size:
            yield rows[first : first + size]
            first += size


class DriverSql:
    """Placeholders, JSON casts and timestamps for one connection's backend.

    Meant to live for one batch: it remembers the timestamps it has formatted (a batch
    repeats the same hour, deadline and report time several times).
    """

    __slots__ = ("_texts", "postgres")

    def __init__(self, conn: AsyncConnection) -> None:
        name = conn.dialect.name
        if name not in ("sqlite", "postgresql"):
            raise UnsupportedDatabaseError(f"database {name!r} is not supported")
        self.postgres = name == "postgresql"
        self._texts: dict[datetime, str] = {}

    def param(self, number: int) -> str:
        """The ``number``-th positional parameter (from 1)."""
        return f"${number}" if self.postgres else f"?{number}"

    def as_json(self, placeholder: str) -> str:
        """``placeholder`` (JSON text) as the backend's JSON column type."""
        return f"{placeholder}::jsonb" if self.postgres else placeholder

    def timestamp(self, value: datetime) -> datetime | str:
        """``value`` as ``UtcDateTime`` stores it (aware on PostgreSQL, UTC text on SQLite)."""
        if self.postgres:
            return value
        text = self._texts.get(value)
        if text is None:
            text = self._texts[value] = sqlite_timestamp(value)
        return text

    def values_rows(self, rows: int, row_template: str, width: int) -> str:
        """``(...), (...)`` for ``rows`` rows; ``row_template`` uses ``{0}`` .. ``{width-1}``."""
        return _values_rows(self.postgres, rows, row_template, width)


def sqlite_timestamp(value: datetime) -> str:
    """The text SQLAlchemy's SQLite ``DATETIME`` stores for the UTC instant ``value``.

    Same format as the dialect's own (``YYYY-MM-DD HH:MM:SS.ffffff``), so the rows
    written here sort, compare and read back exactly like those written through Core.
    """
    if value.tzinfo is not UTC:  # the contract's timestamps are UTC already: skip this
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored; give it a UTC offset")
        value = value.astimezone(UTC)
    # isoformat is C and gives 'YYYY-MM-DD HH:MM:SS.ffffff+00:00': keep the first 26.
    return value.isoformat(" ", "microseconds")[:26]


@functools.lru_cache(maxsize=64)
def _values_rows(postgres: bool, rows: int, row_template: str, width: int) -> str:
    sigil = "$" if postgres else "?"
    parts = []
    for row in range(rows):
        base = row * width
        names = [f"{sigil}{base + i + 1}" for i in range(width)]
        parts.append("(" + row_template.format(*names) + ")")
    return ", ".join(parts)
