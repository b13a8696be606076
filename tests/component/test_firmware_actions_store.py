"""Firmware Actions in the real store, on SQLite and PostgreSQL: lifecycle, history,
one open Action per terminal, late and redelivered statuses, deadlines."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import MaintenanceWindow, UpdateState, UpdateStatus
from posfleet.firmware.action_records import (
    ActionRecord,
    count_by_state,
    due_offers,
    get_action,
    list_actions,
    list_events,
    next_deadline,
    open_actions_of,
)
from posfleet.firmware.action_states import (
    FINAL_STATES,
    ActionState,
    ActionTransitionError,
    RetryPolicy,
)
from posfleet.firmware.actions import (
    TerminalBusyError,
    cancel_action,
    create_action,
    expire_overdue,
    is_action_open,
    mark_offered,
    record_status,
)
from posfleet.store import upgrade_engine, write_transaction
from posfleet.store.engine import schema_change_transaction
from posfleet.store.migrate import alembic_config
from posfleet.store.schema import FIRMWARE_ACTION_STATES
from tests.component.firmware_rows import T0, add_artifact, signed_manifest

POLICY = RetryPolicy(max_attempts=2)


async def _create(
    engine: AsyncEngine, artifact_id: int, terminal_id: str = "T-1", hours: float = 2
) -> ActionRecord:
    async with write_transaction(engine) as conn:
        return await create_action(
            conn,
            artifact_id=artifact_id,
            terminal_id=terminal_id,
            window=MaintenanceWindow(start="22:00", end="06:00"),
            deadline=T0 + timedelta(hours=hours),
            created_by="user:olga",
            now=T0,
            from_version="5.2.1",
        )


async def _status(
    engine: AsyncEngine,
    action: ActionRecord,
    state: UpdateState,
    *,
    at: datetime,
    terminal_id: str | None = None,
    progress: float = 0.0,
    detail: str = "",
) -> tuple[bool, str | None]:
    status = UpdateStatus(
        action_id=str(action.id), state=state, progress=progress, detail=detail, ts=at
    )
    async with write_transaction(engine) as conn:
        outcome = await record_status(
            conn, terminal_id or action.terminal_id, status, now=at, policy=POLICY
        )
    return outcome.stored, outcome.refused


def test_the_schema_lists_exactly_the_state_machines_states() -> None:
    assert tuple(s.value for s in ActionState) == FIRMWARE_ACTION_STATES


async def test_an_action_is_offered_progresses_and_succeeds_with_its_history(
    engine: AsyncEngine,
) -> None:
    artifact = await add_artifact(engine, signed_manifest("5.3.0"))
    action = await _create(engine, artifact.id)
    assert action.state is ActionState.CREATED and action.artifact_version == "5.3.0"
    async with write_transaction(engine) as conn:
        assert [a.id for a in await due_offers(conn, now=T0)] == [action.id]
        offered = await mark_offered(conn, action.id, now=T0)
        assert await due_offers(conn, now=T0) == []
    assert offered is not None and offered.state is ActionState.OFFERED
    assert offered.attempts == 1 and offered.offered_at == T0

    at = T0
    for state, progress in [
        (UpdateState.ACCEPTED, 0.0),
        (UpdateState.DOWNLOADING, 0.5),
        (UpdateState.INSTALLING, 0.9),
        (UpdateState.SUCCEEDED, 1.0),
    ]:
        at += timedelta(minutes=1)
        assert await _status(engine, action, state, at=at, progress=progress) == (True, None)

    async with engine.connect() as conn:
        done = await get_action(conn, action.id)
        assert done is not None
        assert done.state is ActionState.SUCCEEDED and done.progress == 1.0
        assert done.finished_at == at and done.last_status_at == at
        assert not await is_action_open(conn, str(action.id))
        history = await list_events(conn, action.id)
        counts = await count_by_state(conn)
    assert [(e.source, e.state) for e in history] == [
        ("centre", "created"),
        ("centre", "offered"),
        ("terminal", "accepted"),
        ("terminal", "downloading"),
        ("terminal", "installing"),
        ("terminal", "succeeded"),
    ]
    assert history[3].progress == 0.5 and history[3].actor == "terminal:T-1"
    assert counts[ActionState.SUCCEEDED] == 1 and sum(counts.values()) == 1


async def test_a_redelivered_status_is_stored_once_and_a_late_one_is_kept_unapplied(
    engine: AsyncEngine,
) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    action = await _create(engine, artifact.id)
    at = T0 + timedelta(minutes=1)
    assert await _status(engine, action, UpdateState.ROLLED_BACK, at=at, detail="boot loop")
    assert await _status(engine, action, UpdateState.ROLLED_BACK, at=at, detail="boot loop") == (
        False,
        None,
    )
    late = at + timedelta(minutes=1)
    assert await _status(engine, action, UpdateState.DOWNLOADING, at=late) == (True, None)
    async with engine.connect() as conn:
        final = await get_action(conn, action.id)
        history = await list_events(conn, action.id)
    assert final is not None and final.state is ActionState.ROLLED_BACK
    assert final.detail == "boot loop"
    assert [e.state for e in history if e.source == "terminal"] == ["rolled_back", "downloading"]
    assert not history[-1].applied and "late" in history[-1].note


async def test_statuses_for_unknown_or_another_terminals_action_are_refused(
    engine: AsyncEngine,
) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    action = await _create(engine, artifact.id, "T-1")
    at = T0 + timedelta(minutes=1)
    stored, refused = await _status(engine, action, UpdateState.SUCCEEDED, at=at, terminal_id="T-2")
    assert not stored and refused is not None and "belongs to terminal T-1, not T-2" in refused
    ghost = action.model_copy(update={"id": 99_999})
    stored, refused = await _status(engine, ghost, UpdateState.ACCEPTED, at=at)
    assert not stored and refused is not None and "no firmware action '99999'" in refused
    async with engine.connect() as conn:
        unchanged = await get_action(conn, action.id)
        assert not await is_action_open(conn, "not-a-number")
    assert unchanged is not None and unchanged.state is ActionState.CREATED


async def test_one_open_action_per_terminal_even_when_two_pushes_race(
    engine: AsyncEngine,
) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    results = await asyncio.gather(
        *(_create(engine, artifact.id, "T-RACE") for _ in range(4)), return_exceptions=True
    )
    created = [r for r in results if isinstance(r, ActionRecord)]
    busy = [r for r in results if isinstance(r, TerminalBusyError)]
    assert len(created) == 1 and len(busy) == 3
    assert "already has an open firmware action" in str(busy[0])
    async with write_transaction(engine) as conn:
        await cancel_action(conn, created[0].id, actor="user:olga", now=T0, reason="wrong image")
    again = await _create(engine, artifact.id, "T-RACE")
    async with engine.connect() as conn:
        assert [a.id for a in await open_actions_of(conn, ["T-RACE", "T-NONE"])] == [again.id]


async def test_a_failure_is_retried_once_then_fails_for_good(engine: AsyncEngine) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    action = await _create(engine, artifact.id)
    async with write_transaction(engine) as conn:
        await mark_offered(conn, action.id, now=T0)
    at = T0 + timedelta(minutes=1)
    await _status(engine, action, UpdateState.FAILED, at=at, detail="connection reset")
    async with write_transaction(engine) as conn:
        retrying = await get_action(conn, action.id)
        assert retrying is not None and retrying.state is ActionState.RETRYING
        assert [a.id for a in await due_offers(conn, now=at)] == [action.id]
        second = await mark_offered(conn, action.id, now=at)
    assert second is not None and second.attempts == 2 and second.state is ActionState.OFFERED
    at += timedelta(minutes=1)
    await _status(engine, action, UpdateState.FAILED, at=at, detail="connection reset")
    async with engine.connect() as conn:
        failed = await get_action(conn, action.id)
        history = await list_events(conn, action.id)
    assert failed is not None and failed.state is ActionState.FAILED
    assert "gave up after 2" in history[-1].note


async def test_overdue_actions_time_out_and_the_next_deadline_is_known(
    engine: AsyncEngine,
) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    soon = await _create(engine, artifact.id, "T-1", hours=1)
    later = await _create(engine, artifact.id, "T-2", hours=3)
    async with write_transaction(engine) as conn:
        assert await next_deadline(conn) == soon.deadline
        assert await expire_overdue(conn, now=T0 + timedelta(minutes=59)) == []
        expired = await expire_overdue(conn, now=T0 + timedelta(hours=1))
        assert [a.id for a in expired] == [soon.id]
        assert expired[0].state is ActionState.TIMED_OUT
        assert "never answered" in expired[0].detail
        assert await next_deadline(conn) == later.deadline
        # A second sweep finds nothing more to do.
        assert await expire_overdue(conn, now=T0 + timedelta(hours=1, minutes=1)) == []
        counts = await count_by_state(conn)
        listed = await list_actions(conn, states=[ActionState.TIMED_OUT])
    assert counts[ActionState.TIMED_OUT] == 1 and counts[ActionState.CREATED] == 1
    assert [a.terminal_id for a in listed] == ["T-1"]


async def test_a_final_action_cannot_be_cancelled(engine: AsyncEngine) -> None:
    artifact = await add_artifact(engine, signed_manifest())
    action = await _create(engine, artifact.id)
    await _status(engine, action, UpdateState.REJECTED, at=T0, detail="wrong model")
    with pytest.raises(ActionTransitionError, match="already rejected"):
        async with write_transaction(engine) as conn:
            await cancel_action(conn, action.id, actor="user:olga", now=T0)
    async with engine.connect() as conn:
        state = (await get_action(conn, action.id)).state  # type: ignore[union-attr]
    assert state in FINAL_STATES


def _downgrade_to_artifacts(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    with schema_change_transaction(connection):
        command.downgrade(config, "0007_firmware_artifacts")


async def test_migration_0008_adds_the_action_tables_over_existing_artifacts_and_reverts(
    empty_engine: AsyncEngine,
) -> None:
    await upgrade_engine(empty_engine, "0007_firmware_artifacts")
    artifact = await add_artifact(empty_engine, signed_manifest())
    await upgrade_engine(empty_engine, "0008_firmware_actions")
    # Raw SQL: the store functions of today read columns later revisions add.
    async with empty_engine.begin() as conn:
        await conn.execute(
            sa.text(
                'INSERT INTO firmware_actions (artifact_id, terminal_id, state, "window", '
                "created_by, created_at, updated_at, deadline) "
                "VALUES (:a, 'T-1', 'created', '{}', 'user:olga', :t, :t, :t)"
            ),
            {"a": artifact.id, "t": T0},
        )
        stored = await conn.scalar(sa.text("SELECT artifact_id FROM firmware_actions"))
    assert stored == artifact.id
    async with empty_engine.connect() as conn:
        await conn.run_sync(_downgrade_to_artifacts)
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert "firmware_actions" not in tables and "firmware_action_events" not in tables
    assert "firmware_artifacts" in tables
