"""Alembic environment for the central store.

posfleet.store.migrate runs Alembic on a connection it already opened and passes it in
``config.attributes["connection"]``. Run by hand, the URL comes from ``-x url=...``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from posfleet.store.engine import create_engine, schema_change_transaction
from posfleet.store.schema import metadata

config = context.config


def _configure_and_run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _configure_in_transaction(connection: Connection) -> None:
    with schema_change_transaction(connection):
        _configure_and_run(connection)


async def _run_with_url(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_in_transaction)
    finally:
        await engine.dispose()


def _run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        raise SystemExit("give the database with -x url=sqlite+aiosqlite:///path/posfleet.db")
    if context.is_offline_mode():
        _run_offline(url)
    else:
        asyncio.run(_run_with_url(url))


_main()
