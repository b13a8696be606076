"""``INSERT ... ON CONFLICT`` for whichever backend a connection talks to."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.store.errors import StoreError


class UnsupportedDatabaseError(StoreError):
    """The connection's database is neither SQLite nor PostgreSQL."""


def insert_for(conn: AsyncConnection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    """The dialect's own ``insert(table)``, which has ``on_conflict_do_*`` and ``excluded``.

    Both SQLite (3.24+) and PostgreSQL implement the same ``ON CONFLICT`` clause; only the
    SQLAlchemy construct differs, so callers write one upsert for both.
    """
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise UnsupportedDatabaseError(f"database {name!r} is not supported: use SQLite or PostgreSQL")
