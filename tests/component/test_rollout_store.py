"""Rollout commands in the real store, on SQLite and PostgreSQL: the preview, the start
that resolves targets into waves, roles and the four-eyes rule (refusals audited),
pause and resume, abort cancelling what is not installing yet, and the roll back's image."""

from __future__ import annotations

from collections.abc import Awaitable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import MaintenanceWindow
from posfleet.firmware.action_records import get_action
from posfleet.firmware.action_states import ActionState
from posfleet.firmware.actions import create_action
from posfleet.firmware.download_tokens import DownloadTokens
from posfleet.firmware.offers import FirmwareOffers, PushRequest
from posfleet.firmware.rollout_machine import RolloutTransitionError
from posfleet.firmware.rollout_model import RolloutPolicyError, RolloutState, TargetFilter
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.firmware.rollouts import (
    RolloutConflictError,
    RolloutNotFoundError,
    RolloutPermissionError,
    abort_rollout,
    get_rollout,
    list_rollouts,
    preview_rollout,
    rollback_rollout,
    run_command,
    start_rollout,
)
from posfleet.store import write_transaction
from posfleet.store.accounts import Role, list_audit
from posfleet.store.schema import firmware_actions, rollout_targets
from tests.component.firmware_rows import T0, add_artifact, signed_manifest
from tests.component.rollout_rows import (
    OPS,
    OTHER_OPS,
    add_fleet,
    artifacts,
    new_rollout,
    quick_policy,
    register,
)


async def test_preview_shows_waves_and_exclusions_and_start_stores_them(
    engine: AsyncEngine,
) -> None:
    new, _old = await artifacts(engine)
    fleet = await add_fleet(engine, 20, sites=4)
    async with write_transaction(engine) as conn:
        await register(conn, "X-A920", model="A920")
        await register(conn, "X-OLD", firmware="4.9.0")
        await register(conn, "X-DONE", firmware="5.3.0")
        await register(conn, "X-GONE", online=False, seen=T0 - timedelta(days=30))
    rollout = await new_rollout(engine, new, quick_policy(10, 50, 100))
    assert rollout.state is RolloutState.DRAFT

    async with write_transaction(engine) as conn:
        shown = await preview_rollout(conn, rollout.id, now=T0, actor=OPS)
    assert sorted(r.terminal_id for r in shown.rows) == fleet
    assert [w.terminals for w in shown.waves] == [2, 8, 10]
    assert dict(shown.excluded) == {
        "X-A920": "wrong_model",
        "X-OLD": "below_min_version",
        "X-DONE": "already_current",
        "X-GONE": "offline_too_long",
    }
    # No wave holds a whole site of five terminals.
    assert all(w.sites == w.terminals for w in shown.waves[:1])
    assert shown.to_json(limit=3)["excluded_counts"]["wrong_model"] == 1

    started = await run_command(
        engine, "start", rollout.id, actor=OPS, actor_role=Role.OPS, reason_code="bug_fix",
        reason_text="go",
    )  # fmt: skip
    assert started.state is RolloutState.RUNNING and started.current_wave == 0
    assert [w.planned for w in started.waves] == [2, 8, 10]
    assert [w.counts.not_offered for w in started.waves] == [2, 8, 10]
    assert started.excluded == {
        "wrong_model": 1, "below_min_version": 1, "already_current": 1, "offline_too_long": 1
    }  # fmt: skip
    # The stored plan is the preview's.
    by_wave = {w.wave: w for w in shown.waves}
    assert {w.wave: w.planned for w in started.waves} == {
        k: v.terminals for k, v in by_wave.items()
    }
    assert [(t.command, t.from_state, t.to_state, t.actor) for t in started.transitions] == [
        ("create", None, RolloutState.DRAFT, OPS),
        ("preview", RolloutState.DRAFT, RolloutState.PREVIEWED, OPS),
        ("start", RolloutState.PREVIEWED, RolloutState.RUNNING, OPS),
    ]
    async with engine.connect() as conn:
        audit = [e for e in await list_audit(conn) if e.target == f"rollout:{rollout.id}"]
        listed = await list_rollouts(conn)
    assert {e.action for e in audit} == {"rollout.create", "rollout.preview", "rollout.start"}
    start_entry = next(e for e in audit if e.action == "rollout.start")
    assert start_entry.reason == "go" and start_entry.detail["waves"] == [2, 8, 10]
    assert [r.id for r in listed] == [rollout.id]
    assert listed[0].totals.terminals == 20
    assert started.to_json()["allowed_commands"] == ["pause", "abort", "rollback"]


async def test_a_second_approver_is_needed_and_refusals_are_audited(
    engine: AsyncEngine,
) -> None:
    new, _ = await artifacts(engine)
    await add_fleet(engine, 3)
    rollout = await new_rollout(engine, new, quick_policy(100, second_approver=True))
    async with write_transaction(engine) as conn:
        await preview_rollout(conn, rollout.id, now=T0, actor=OPS)

    def command(name: str, actor: str, role: Role = Role.OPS) -> Awaitable[RolloutRecord]:
        return run_command(engine, name, rollout.id, actor=actor, actor_role=role,
                           reason_code="security_fix", reason_text="CVE-2026-0042")  # fmt: skip

    with pytest.raises(RolloutPermissionError, match="second approver"):
        await command("start", OPS)
    with pytest.raises(RolloutPermissionError, match="needs the ops role"):
        await command("start", "user:sam", Role.SUPPORT)
    with pytest.raises(RolloutPermissionError, match="cannot approve"):
        await command("approve", OPS)
    approved = await command("approve", OTHER_OPS)
    assert approved.state is RolloutState.AWAITING_APPROVAL
    assert approved.approved_by == OTHER_OPS
    started = await command("start", OPS)  # the creator may start once approved
    assert started.state is RolloutState.RUNNING
    paused = await command("pause", "user:sam", Role.SUPPORT)  # support may brake
    assert paused.paused_reason == "paused by user:sam: CVE-2026-0042"
    with pytest.raises(RolloutPermissionError, match="someone else must resume"):
        await command("resume", OPS)
    resumed = await command("resume", OTHER_OPS)
    assert resumed.state is RolloutState.RUNNING

    async with engine.connect() as conn:
        audit = await list_audit(conn, limit=50)
        record = await get_rollout(conn, rollout.id)
    refused = [(e.action, e.actor) for e in audit if e.action.endswith(".refused")]
    assert sorted(refused) == sorted(
        [
            ("rollout.start.refused", OPS),
            ("rollout.start.refused", "user:sam"),
            ("rollout.approve.refused", OPS),
            ("rollout.resume.refused", OPS),
        ]
    )
    support = next(e for e in audit if e.actor == "user:sam" and e.action.endswith("refused"))
    assert support.detail["role"] == "support" and support.reason == "CVE-2026-0042"
    commands = [t.command for t in record.transitions]
    assert commands == ["create", "preview", "request_approval", "approve", "start", "pause",
                        "resume"]  # fmt: skip


async def test_bad_commands_say_why(engine: AsyncEngine) -> None:
    new, _ = await artifacts(engine)
    rollout = await new_rollout(engine, new, quick_policy(100))
    with pytest.raises(RolloutTransitionError, match="not been previewed"):
        await run_command(engine, "start", rollout.id, actor=OPS, actor_role="ops",
                          reason_code="other")  # fmt: skip
    with pytest.raises(RolloutPolicyError, match="reason code 'because'"):
        await run_command(engine, "pause", rollout.id, actor=OPS, actor_role="ops",
                          reason_code="because")  # fmt: skip
    with pytest.raises(RolloutNotFoundError):
        await run_command(engine, "pause", 999, actor=OPS, actor_role="ops", reason_code="other")
    async with write_transaction(engine) as conn:
        await preview_rollout(conn, rollout.id, now=T0)
    # Nothing in the fleet can take it: the start says so and changes nothing.
    with pytest.raises(RolloutConflictError, match="no terminal matches"):
        await run_command(engine, "start", rollout.id, actor=OPS, actor_role="ops",
                          reason_code="other")  # fmt: skip
    async with engine.connect() as conn:
        assert (await get_rollout(conn, rollout.id)).state is RolloutState.PREVIEWED


async def _started(engine: AsyncEngine, count: int, **kwargs: object) -> int:
    new, _old = await artifacts(engine)
    await add_fleet(engine, count)
    rollout = await new_rollout(engine, new, quick_policy(100), **kwargs)  # type: ignore[arg-type]
    async with write_transaction(engine) as conn:
        await preview_rollout(conn, rollout.id, now=T0)
        await start_rollout(conn, rollout.id, actor=OPS, actor_role=Role.OPS,
                            reason_code="bug_fix", now=T0)  # fmt: skip
    return rollout.id


async def _action(engine: AsyncEngine, rollout_id: int, terminal_id: str, state: str) -> int:
    """An Action of the rollout for ``terminal_id``, forced into ``state``."""
    async with write_transaction(engine) as conn:
        record = await get_rollout(conn, rollout_id)
        action = await create_action(
            conn, artifact_id=record.artifact_id, terminal_id=terminal_id,
            window=MaintenanceWindow(), deadline=T0 + timedelta(days=1), created_by="rollout",
            now=T0, rollout_id=rollout_id,
        )  # fmt: skip
        final = ActionState(state).final
        await conn.execute(
            sa.update(firmware_actions)
            .where(firmware_actions.c.id == action.id)
            .values(state=state, open_key=None if final else terminal_id,
                    finished_at=T0 if final else None)
        )  # fmt: skip
        await conn.execute(
            sa.update(rollout_targets)
            .where(
                rollout_targets.c.rollout_id == rollout_id,
                rollout_targets.c.terminal_id == terminal_id,
            )
            .values(action_id=action.id)
        )
    return action.id


async def test_abort_cancels_what_is_not_installing_yet(engine: AsyncEngine) -> None:
    rollout_id = await _started(engine, 4)
    offered = await _action(engine, rollout_id, "T-000", "offered")
    installing = await _action(engine, rollout_id, "T-001", "installing")
    done = await _action(engine, rollout_id, "T-002", "succeeded")
    async with engine.connect() as conn:
        counts = (await get_rollout(conn, rollout_id)).waves[0].counts
    assert (counts.succeeded, counts.in_progress, counts.not_offered) == (1, 2, 1)

    async with write_transaction(engine) as conn:
        aborted = await abort_rollout(conn, rollout_id, actor=OPS, actor_role="ops",
                                      reason_code="other", reason_text="wrong image")  # fmt: skip
        states = {a: (await get_action(conn, a)).state for a in (offered, installing, done)}  # type: ignore[union-attr]
    assert aborted.state is RolloutState.ABORTED and aborted.finished_at is not None
    assert states == {
        offered: ActionState.CANCELLED,
        installing: ActionState.INSTALLING,
        done: ActionState.SUCCEEDED,
    }
    with pytest.raises(RolloutTransitionError, match="aborted"):
        await run_command(engine, "resume", rollout_id, actor=OPS, actor_role="ops",
                          reason_code="other")  # fmt: skip


async def test_rollback_needs_an_older_image_signed_for_downgrades(engine: AsyncEngine) -> None:
    new = await add_artifact(engine, signed_manifest("5.3.0"))
    plain_old = await add_artifact(engine, signed_manifest("5.2.1"))
    await add_fleet(engine, 2)
    with pytest.raises(RolloutPolicyError, match="allow_downgrade"):
        await new_rollout(engine, new, quick_policy(100), rollback=plain_old)
    rollout = await new_rollout(engine, new, quick_policy(100))
    async with write_transaction(engine) as conn:
        await preview_rollout(conn, rollout.id, now=T0)
        await start_rollout(conn, rollout.id, actor=OPS, actor_role="ops", reason_code="feature")
    with pytest.raises(RolloutConflictError, match="no artifact to roll back to"):
        await run_command(engine, "rollback", rollout.id, actor=OPS, actor_role="ops",
                          reason_code="rollback")  # fmt: skip
    older = await add_artifact(engine, signed_manifest("5.1.0", allow_downgrade=True))
    newest_older = await add_artifact(engine, signed_manifest("5.2.0", allow_downgrade=True))
    pending = await _action(engine, rollout.id, "T-000", "waiting_window")
    async with write_transaction(engine) as conn:
        back = await rollback_rollout(
            conn, rollout.id, actor=OPS, actor_role="ops", reason_code="rollback",
            reason_text="reader errors",
        )  # fmt: skip
        action = await get_action(conn, pending)
    assert back.state is RolloutState.ROLLED_BACK
    assert back.rollback_artifact == "pos-os@5.2.0" and back.rollback_artifact_id != older.id
    assert back.rollback_artifact_id == newest_older.id
    assert action is not None and action.state is ActionState.CANCELLED


async def test_a_target_filter_limits_the_rollout(engine: AsyncEngine) -> None:
    new, _ = await artifacts(engine)
    await add_fleet(engine, 10, sites=5)
    rollout = await new_rollout(engine, new, quick_policy(100),
                                target=TargetFilter(site_ids=("S-1", "S-2")))  # fmt: skip
    async with write_transaction(engine) as conn:
        shown = await preview_rollout(conn, rollout.id, now=T0)
    assert sorted(r.terminal_id for r in shown.rows) == ["T-001", "T-002", "T-006", "T-007"]
    assert shown.excluded == []


async def test_a_rollout_offers_its_image_to_a_terminal_once_even_after_that_action_ended(
    engine: AsyncEngine,
) -> None:
    rollout_id = await _started(engine, 2)
    await _action(engine, rollout_id, "T-000", "failed")
    service = FirmwareOffers(engine, DownloadTokens(b"s" * 32), base_url=None)
    again = await service.push(
        PushRequest("pos-os@5.3.0", ["T-000", "T-001"], rollout_id=rollout_id), actor="rollout:1"
    )
    assert [a.terminal_id for a in again.created] == ["T-001"]
    assert [(r.terminal_id, r.reason) for r in again.refused] == [("T-000", "busy")]
    # An operator's own push (no rollout) is not held back by the rollout's Action.
    manual = await service.push(PushRequest("pos-os@5.3.0", ["T-000"]), actor=OPS)
    assert [a.rollout_id for a in manual.created] == [None]
