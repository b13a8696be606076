"""Account administration from the command line: staff users and API tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.settings import CentralSettings
from posfleet.store.accounts import Role, create_api_token, create_user, record_audit
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade_engine


@asynccontextmanager
async def _migrated_engine(settings: CentralSettings) -> AsyncIterator[AsyncEngine]:
    """An engine on the configured database, created or migrated to the latest revision.

    A fresh var dir gets its database here, as ``posfleet db upgrade`` would create it; an
    existing one (a running demo's, say) is brought up to date, which is a no-op when it
    already is. The migration runs on this engine, inside the caller's event loop.
    """
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade_engine(engine)
        yield engine
    finally:
        await engine.dispose()


async def add_user(settings: CentralSettings, username: str, password: str, role: str) -> None:
    """Create a staff user; audited as done by the local operator."""
    async with _migrated_engine(settings) as engine, engine.begin() as conn:
        await create_user(conn, username, password, Role(role))
        await record_audit(conn, "cli", "user.add", username, {"role": role}, "posfleet user add")


async def create_token(settings: CentralSettings, name: str, role: str) -> str:
    """Create an API token and return it (it is shown only once)."""
    async with _migrated_engine(settings) as engine, engine.begin() as conn:
        token = await create_api_token(conn, name, Role(role))
        await record_audit(
            conn, "cli", "token.create", name, {"role": role}, "posfleet token create"
        )
    return token
