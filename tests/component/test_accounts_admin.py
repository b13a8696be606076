"""``posfleet user add`` and ``posfleet token create`` as a shell runs them: a fresh var dir
gets its database, an existing one (a demo's, still open) is migrated and kept."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store import create_engine, upgrade_engine
from posfleet.store.accounts import Role, list_audit, resolve_api_token, verify_login
from posfleet.store.migrate import alembic_config

PASSWORD = "correct-horse-battery-7"


def _posfleet(var_dir: Path, *args: str, password: str | None = None) -> str:
    """Run the ``posfleet`` CLI in a subprocess; return stdout; fail on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_")}
    env["POSFLEET_VAR_DIR"] = str(var_dir)
    if password is not None:
        env["POSFLEET_PASSWORD"] = password
    done = subprocess.run(
        [sys.executable, "-m", "posfleet.central.cli", *args],
        env=env,
        cwd=var_dir.parent,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Traceback" not in output, output
    return done.stdout


def _head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def _revision(engine: AsyncEngine) -> str:
    async with engine.connect() as conn:
        result = await conn.execute(sa.text("SELECT version_num FROM alembic_version"))
        return str(result.scalar_one())


async def test_on_a_fresh_var_dir_the_user_logs_in_and_the_token_works(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    added = _posfleet(var_dir, "user", "add", "alice", "--role", "support", password=PASSWORD)
    token = _posfleet(var_dir, "token", "create", "ops-bot", "--role", "ops").strip()

    assert "alice" in added
    engine = create_engine(f"sqlite+aiosqlite:///{var_dir / 'posfleet.db'}")
    try:
        assert await _revision(engine) == _head_revision()
        async with engine.connect() as conn:
            user = await verify_login(conn, "alice", PASSWORD)
            assert user is not None
            assert user.role is Role.SUPPORT
            assert await verify_login(conn, "alice", PASSWORD + "x") is None
            principal = await resolve_api_token(conn, token)
            assert principal is not None
            assert principal.role is Role.OPS
            actions = {(e.action, e.target) for e in await list_audit(conn)}
        assert {("user.add", "alice"), ("token.create", "ops-bot")} <= actions
    finally:
        await engine.dispose()


async def test_an_open_database_at_an_older_revision_is_migrated_and_keeps_its_rows(
    tmp_path: Path,
) -> None:
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    engine = create_engine(f"sqlite+aiosqlite:///{var_dir / 'posfleet.db'}")
    try:
        await upgrade_engine(engine, "0005_health_from_samples")
        async with engine.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO terminals (terminal_id, merchant_id, first_seen, last_seen)"
                    " VALUES ('DEMO-00001', 'M1001', :t, :t)"
                ),
                {"t": datetime(2026, 3, 2, tzinfo=UTC)},
            )
        # Like a running demo: the database stays open (a reader) while the CLI writes.
        async with engine.connect() as reader:
            await reader.execute(sa.text("SELECT count(*) FROM terminals"))
            _posfleet(var_dir, "user", "add", "bob", "--role", "support", password=PASSWORD)
            token = _posfleet(var_dir, "token", "create", "ops-bot", "--role", "ops").strip()
        assert await _revision(engine) == _head_revision()
        async with engine.connect() as conn:
            assert await verify_login(conn, "bob", PASSWORD) is not None
            assert await resolve_api_token(conn, token) is not None
            ids = (await conn.execute(sa.text("SELECT terminal_id FROM terminals"))).scalars()
            assert list(ids) == ["DEMO-00001"]
    finally:
        await engine.dispose()


def test_an_unreachable_database_is_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_")}
    env["POSFLEET_VAR_DIR"] = str(tmp_path / "var")
    env["POSFLEET_DATABASE_URL"] = "postgresql+asyncpg://nobody@127.0.0.1:1/posfleet"
    done = subprocess.run(
        [sys.executable, "-m", "posfleet.central.cli", "token", "create", "ops-bot"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "posfleet: error: cannot migrate" in done.stderr
    assert "cannot reach the database" in done.stderr
