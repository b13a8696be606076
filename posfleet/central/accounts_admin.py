"""Account administration from the command line: staff users and API tokens."""

from __future__ import annotations

from posfleet.central.settings import CentralSettings
from posfleet.store.accounts import Role, create_api_token, create_user, record_audit
from posfleet.store.engine import create_engine
from posfleet.store.migrate import upgrade


async def add_user(settings: CentralSettings, username: str, password: str, role: str) -> None:
    """Create a staff user; audited as done by the local operator."""
    url = settings.resolved_database_url
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await create_user(conn, username, password, Role(role))
            await record_audit(
                conn, "cli", "user.add", username, {"role": role}, "posfleet user add"
            )
    finally:
        await engine.dispose()


async def create_token(settings: CentralSettings, name: str, role: str) -> str:
    """Create an API token and return it (it is shown only once)."""
    url = settings.resolved_database_url
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    upgrade(url)
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            token = await create_api_token(conn, name, Role(role))
            await record_audit(
                conn, "cli", "token.create", name, {"role": role}, "posfleet token create"
            )
    finally:
        await engine.dispose()
    return token
