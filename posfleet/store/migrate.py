"""Bring a database's schema up to date with the Alembic revisions shipped in the package."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.util.exc import CommandError
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store.engine import create_engine, schema_change_transaction
from posfleet.store.errors import ForeignKeyViolationError, MigrationError

MIGRATIONS_DIR = Path(__file__).resolve().with_name("migrations")


def alembic_config() -> Config:
    """The Alembic configuration, pointing at the migrations inside this package."""
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _run_upgrade(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with schema_change_transaction(connection):
        command.upgrade(config, revision)


async def upgrade_engine(engine: AsyncEngine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``, in one transaction."""
    shown = engine.url.render_as_string(hide_password=True)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_run_upgrade, revision)
    except (CommandError, ForeignKeyViolationError) as exc:
        raise MigrationError(shown, revision, str(exc)) from exc
    except SQLAlchemyError as exc:
        raise MigrationError(shown, revision, str(exc).splitlines()[0]) from exc
    except OSError as exc:
        raise MigrationError(shown, revision, f"cannot reach the database: {exc}") from exc


async def _upgrade_url(url: str, revision: str) -> None:
    engine = create_engine(url)
    try:
        await upgrade_engine(engine, revision)
    finally:
        await engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` (SQLite or PostgreSQL) to ``revision``.

    Blocking: call it before the event loop starts, or through ``asyncio.to_thread``;
    async code that already has an engine awaits :func:`upgrade_engine` instead.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(_upgrade_url(url, revision))
        return
    shown = make_url(url).render_as_string(hide_password=True)
    raise MigrationError(
        shown, revision, "upgrade() blocks; from async code use await upgrade_engine(engine)"
    )
