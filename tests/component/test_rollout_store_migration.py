"""Migration 0009 on SQLite and PostgreSQL: the rollout tables arrive over existing
Actions (their history intact, no rollout), and go again on a downgrade."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.store import upgrade_engine
from posfleet.store.engine import schema_change_transaction
from posfleet.store.migrate import alembic_config
from tests.component.firmware_rows import T0, add_artifact, signed_manifest

ROLLOUT_TABLES = {"rollouts", "rollout_groups", "rollout_targets", "rollout_transitions"}


def _downgrade_to_actions(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with schema_change_transaction(connection):
        command.downgrade(config, "0008_firmware_actions")


def _columns(connection: Connection, table: str) -> set[str]:
    return {c["name"] for c in sa.inspect(connection).get_columns(table)}


async def _old_action(engine: AsyncEngine, artifact_id: int) -> int:
    """An Action and one history line as revision 0008 stored them."""
    async with engine.begin() as conn:
        action_id = (
            await conn.execute(
                sa.text(
                    "INSERT INTO firmware_actions (artifact_id, terminal_id, open_key, state, "
                    "\"window\", created_by, created_at, updated_at, deadline) VALUES (:a, 'T-1', "
                    "'T-1', 'offered', :w, 'user:olga', :t, :t, :t) RETURNING id"
                ),
                {"a": artifact_id, "w": '{"start": "22:00", "end": "06:00"}', "t": T0},
            )
        ).scalar_one()
        await conn.execute(
            sa.text(
                "INSERT INTO firmware_action_events (action_id, ts, source, actor, state, "
                "applied, action_state) VALUES (:a, :t, 'centre', 'user:olga', 'created', "
                ":yes, 'created')"
            ),
            {"a": action_id, "t": T0, "yes": True},
        )
    return int(action_id)


async def test_migration_0009_adds_rollouts_over_existing_actions_and_reverts(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_engine(empty_engine, "0008_firmware_actions")
    artifact = await add_artifact(empty_engine, signed_manifest())
    action_id = await _old_action(empty_engine, artifact.id)

    await upgrade_engine(empty_engine, "0009_rollouts")
    async with empty_engine.connect() as conn:
        tables = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
        row = (
            await conn.execute(
                sa.text("SELECT state, rollout_id FROM firmware_actions WHERE id = :a"),
                {"a": action_id},
            )
        ).one()
        events = await conn.scalar(
            sa.text("SELECT count(*) FROM firmware_action_events WHERE action_id = :a"),
            {"a": action_id},
        )
    assert tables >= ROLLOUT_TABLES
    # The Action kept its state and its history (SQLite rebuilt the table to add the link).
    assert tuple(row) == ("offered", None)
    assert events == 1

    async with empty_engine.connect() as conn:
        await conn.run_sync(_downgrade_to_actions)
        tables = set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))
        columns = await conn.run_sync(_columns, "firmware_actions")
        events = await conn.scalar(
            sa.text("SELECT count(*) FROM firmware_action_events WHERE action_id = :a"),
            {"a": action_id},
        )
    assert not ROLLOUT_TABLES & tables
    assert "rollout_id" not in columns
    assert events == 1
