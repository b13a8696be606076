"""The rollout runner's steps on the store: leases, joiners, waves, offers due, outcomes.

Each function takes an open connection and leaves the transaction to the caller, except
the lease functions, which commit at once (a lease is worth nothing uncommitted).
:mod:`posfleet.firmware.rollout_runner` strings them together.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import FirmwareManifest
from posfleet.firmware.action_states import ActionState
from posfleet.firmware.offers import PushResult
from posfleet.firmware.rollout_health import UpdatedTerminal
from posfleet.firmware.rollout_model import Exclusion, Plan, RolloutState, WaveState
from posfleet.firmware.rollout_planner import assign_joiner, exclusion_for, next_offer_times
from posfleet.firmware.rollout_queries import load_candidates
from posfleet.firmware.rollout_records import RolloutRecord
from posfleet.firmware.rollout_transitions import seed_of
from posfleet.store.engine import write_transaction
from posfleet.store.schema import (
    firmware_actions,
    rollout_groups,
    rollout_targets,
    rollouts,
    terminals,
)

_r, _t, _a, _g = rollouts.c, rollout_targets.c, firmware_actions.c, rollout_groups.c

PUSH_REASONS = {
    "same_version": Exclusion.ALREADY_CURRENT.value,
    "downgrade_unconfirmed": Exclusion.DOWNGRADE.value,
}
"""A push refusal in the rollout's words (the other reasons are the same word)."""


# ------------------------------------------------------------------------------ leases


def _runnable() -> sa.ColumnElement[bool]:
    """Rollouts the runner works on: running, and roll backs not done yet."""
    return sa.or_(
        _r.state == RolloutState.RUNNING.value,
        sa.and_(_r.state == RolloutState.ROLLED_BACK.value, _r.finished_at.is_(None)),
    )


async def runnable_ids(conn: AsyncConnection) -> list[int]:
    """The ids of the rollouts the runner has work on, oldest first."""
    rows = await conn.execute(sa.select(_r.id).where(_runnable()).order_by(_r.id))
    return [int(i) for i in rows.scalars()]


async def take_lease(
    engine: AsyncEngine,
    rollout_id: int,
    owner: str,
    *,
    now: datetime,
    ttl: timedelta,
    state: RolloutState | None = None,
) -> bool:
    """Hold (or renew) the rollout's lease until ``now + ttl``; False if another holds it.

    One conditional update: it wins only where the lease is free, expired or ours, so two
    instances never both hold one rollout; with ``state``, only while the rollout is in
    it (a renewal right before a push fails once staff paused or aborted it).
    """
    async with write_transaction(engine) as conn:
        result = await conn.execute(
            sa.update(rollouts)
            .where(
                _r.id == rollout_id,
                _runnable() if state is None else _r.state == state.value,
                sa.or_(
                    _r.lease_owner.is_(None),
                    _r.lease_until.is_(None),
                    _r.lease_until < now,
                    _r.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_until=now + ttl)
        )
    return result.rowcount == 1


async def release_leases(engine: AsyncEngine, owner: str) -> int:
    """Give up every lease ``owner`` holds (on a clean stop, so another takes over at once)."""
    async with write_transaction(engine) as conn:
        result = await conn.execute(
            sa.update(rollouts)
            .where(_r.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )
    return int(result.rowcount)


# ---------------------------------------------------------------------------- targets


async def link_actions(conn: AsyncConnection, rollout: RolloutRecord) -> None:
    """Point targets at the rollout's Actions made for them but not recorded (a crash
    between a push and its bookkeeping, or another instance's push)."""
    pairs = [("action_id", rollout.artifact_id)]
    if rollout.rollback_artifact_id is not None:
        pairs.append(("rollback_action_id", rollout.rollback_artifact_id))
    for column, artifact_id in pairs:
        made = (
            sa.select(_a.id)
            .where(
                _a.rollout_id == rollout.id,
                _a.terminal_id == _t.terminal_id,
                _a.artifact_id == artifact_id,
            )
            .scalar_subquery()
        )
        await conn.execute(
            sa.update(rollout_targets)
            .where(_t.rollout_id == rollout.id, _t[column].is_(None), made.is_not(None))
            .values({column: made})
        )


async def add_joiners(
    conn: AsyncConnection,
    rollout: RolloutRecord,
    manifest: FirmwareManifest,
    *,
    now: datetime,
    since: datetime,
) -> list[str]:
    """Terminals that started matching (or stopped being excluded) since ``since`` join.

    A new terminal, one with new inventory, one back online, one whose other Action
    ended: if it is in the target filter and can take the image, it joins the current
    wave while that one still has terminals to offer, else the next (``joined_late``);
    one that cannot is recorded as excluded, with the reason. Returns the joiners' ids.
    """
    t = terminals.c
    in_rollout = (
        sa.select(_t.terminal_id)
        .where(
            _t.rollout_id == rollout.id,
            _t.terminal_id == t.terminal_id,
            _t.excluded_reason.is_(None),
        )
        .exists()
    )
    ended = sa.select(_a.id).where(_a.terminal_id == t.terminal_id, _a.finished_at > since).exists()
    changed = sa.or_(
        t.first_seen > since, t.inventory_at > since, t.state_changed_at > since, ended
    )
    ids = list((await conn.execute(sa.select(t.terminal_id).where(~in_rollout, changed))).scalars())
    if not ids:
        return []
    excluded = dict(
        (
            await conn.execute(
                sa.select(_t.terminal_id, _t.excluded_reason).where(
                    _t.rollout_id == rollout.id, _t.terminal_id.in_(ids)
                )
            )
        ).all()
    )
    current = rollout.waves[rollout.current_wave]
    # A wave takes newcomers while it still offers; once every terminal of it has its
    # offer (it only waits for their outcome, or soaks), they go to the next one.
    offering = current.state is WaveState.PENDING or (
        current.state is WaveState.RUNNING and current.counts.not_offered > 0
    )
    empty = Plan(waves=tuple(() for _ in rollout.policy.waves))
    joined: list[str] = []
    for c in await load_candidates(conn, terminal_ids=ids):
        if not rollout.target.matches(c):
            continue
        why = exclusion_for(c, manifest, rollout.policy, now=now)
        values: dict[str, object] = {"site_id": c.site_id, "from_version": c.firmware_version}
        if why is not None:
            values |= {"excluded_reason": why.value, "wave": None}
        else:
            wave = assign_joiner(
                empty, c, rollout.current_wave,
                current_wave_open=offering,
            )  # fmt: skip
            started = wave <= rollout.current_wave and current.state is not WaveState.PENDING
            values |= {"excluded_reason": None, "wave": wave, "joined_late": True,
                       "offer_at": now if started else None, "refused": None}  # fmt: skip
            joined.append(c.terminal_id)
        if c.terminal_id in excluded:
            if why is not None and excluded[c.terminal_id] == why.value:
                continue
            await conn.execute(
                sa.update(rollout_targets)
                .where(_t.rollout_id == rollout.id, _t.terminal_id == c.terminal_id)
                .values(values)
            )
        else:
            await conn.execute(
                sa.insert(rollout_targets).values(
                    rollout_id=rollout.id, terminal_id=c.terminal_id, added_at=now, **values
                )
            )
    return joined


async def start_wave(
    conn: AsyncConnection, rollout: RolloutRecord, wave: int, *, now: datetime
) -> int:
    """Give the wave's terminals their offer times (rate limit, jitter) and mark it running.

    Returns how many terminals got a time; 0 if another writer started it first.
    """
    started = await conn.execute(
        sa.update(rollout_groups)
        .where(_g.rollout_id == rollout.id, _g.wave == wave, _g.state == WaveState.PENDING.value)
        .values(state=WaveState.RUNNING.value, started_at=now)
    )
    if started.rowcount != 1:
        return 0
    waiting = list(
        (
            await conn.execute(
                sa.select(_t.terminal_id)
                .where(
                    _t.rollout_id == rollout.id,
                    _t.wave == wave,
                    _t.excluded_reason.is_(None),
                    _t.action_id.is_(None),
                    _t.offer_at.is_(None),
                )
                .order_by(_t.terminal_id)
            )
        ).scalars()
    )
    if not waiting:
        return 0
    rng = random.Random(f"{seed_of(rollout.id)}/wave-{wave}")
    times = next_offer_times(len(waiting), rollout.policy, now=now, rng=rng)
    # Shuffled, so the rate limit does not offer one end of the id range first.
    rng.shuffle(waiting)
    await conn.execute(
        sa.update(rollout_targets)
        .where(_t.rollout_id == rollout.id, _t.terminal_id == sa.bindparam("tid"))
        .values(offer_at=sa.bindparam("at")),
        [{"tid": tid, "at": at} for tid, at in zip(waiting, times, strict=True)],
    )
    return len(waiting)


async def due_targets(
    conn: AsyncConnection, rollout: RolloutRecord, *, now: datetime, limit: int
) -> list[str]:
    """Terminals whose offer is due: in a started wave, no Action yet, their time come."""
    if limit <= 0:
        return []
    query = (
        sa.select(_t.terminal_id)
        .where(
            _t.rollout_id == rollout.id,
            _t.wave <= rollout.current_wave,
            _t.excluded_reason.is_(None),
            _t.action_id.is_(None),
            _t.offer_at <= now,
        )
        .order_by(_t.offer_at, _t.terminal_id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def next_offer_due(conn: AsyncConnection, owner: str) -> datetime | None:
    """The earliest offer time still to come in the started waves of the running
    rollouts whose lease ``owner`` holds.

    The runner sleeps no longer than until then, so a paced wave goes out at its pace
    and not at the runner's round interval.
    """
    query = (
        sa.select(sa.func.min(_t.offer_at))
        .select_from(rollout_targets.join(rollouts, _r.id == _t.rollout_id))
        .where(
            _r.state == RolloutState.RUNNING.value,
            _r.lease_owner == owner,
            _t.wave <= _r.current_wave,
            _t.excluded_reason.is_(None),
            _t.action_id.is_(None),
            _t.offer_at.is_not(None),
        )
    )
    due: datetime | None = (await conn.execute(query)).scalar()
    return due


async def recent_offers(
    conn: AsyncConnection, rollout_id: int, artifact_id: int, *, now: datetime
) -> list[datetime]:
    """When this rollout's Actions of ``artifact_id`` of the last minute were created."""
    query = sa.select(_a.created_at).where(
        _a.rollout_id == rollout_id,
        _a.artifact_id == artifact_id,
        _a.created_at > now - timedelta(minutes=1),
    )
    return list((await conn.execute(query)).scalars())


async def record_push(
    conn: AsyncConnection, rollout: RolloutRecord, result: PushResult, *, rollback: bool = False
) -> None:
    """Write what a push did onto the targets: their Actions, or why they got none.

    A main-image terminal refused as ``busy`` (another Action open) is excluded as busy
    and may join again once that Action ends; one refused for good is excluded with the
    refusal's reason. A roll back leaves busy terminals for a later round.
    """
    column = "rollback_action_id" if rollback else "action_id"
    where = (_t.rollout_id == rollout.id,)
    if result.created:
        await conn.execute(
            sa.update(rollout_targets)
            .where(*where, _t.terminal_id == sa.bindparam("tid"))
            .values({column: sa.bindparam("aid")}),
            [{"tid": a.terminal_id, "aid": a.id} for a in result.created],
        )
    for refusal in result.refused:
        mine = sa.and_(*where, _t.terminal_id == refusal.terminal_id)
        if refusal.reason == "busy":
            if rollback:
                continue
            await link_actions(conn, rollout)  # another instance's push, maybe
            values = {"excluded_reason": Exclusion.BUSY.value, "refused": "busy", "offer_at": None}
            await conn.execute(
                sa.update(rollout_targets).where(mine, _t.action_id.is_(None)).values(values)
            )
            continue
        if rollback:
            values = {"rollback_refused": refusal.reason[:32]}
        else:
            reason = PUSH_REASONS.get(refusal.reason, refusal.reason)[:32]
            values = {"excluded_reason": reason, "refused": refusal.reason[:32], "wave": None}
        await conn.execute(sa.update(rollout_targets).where(mine).values(values))


# --------------------------------------------------------------------- roll back, gate


async def rollback_due(conn: AsyncConnection, rollout: RolloutRecord, *, limit: int) -> list[str]:
    """Terminals this rollout updated that have not been offered the previous version."""
    if limit <= 0:
        return []
    query = (
        sa.select(_t.terminal_id)
        .join(firmware_actions, _a.id == _t.action_id)
        .where(
            _t.rollout_id == rollout.id,
            _a.state == ActionState.SUCCEEDED.value,
            _t.rollback_action_id.is_(None),
            _t.rollback_refused.is_(None),
        )
        .order_by(_t.terminal_id)
        .limit(limit)
    )
    return list((await conn.execute(query)).scalars())


async def open_main_actions(conn: AsyncConnection, rollout: RolloutRecord) -> int:
    """How many of the rollout's Actions of its own image are still open."""
    query = sa.select(sa.func.count()).where(
        _a.rollout_id == rollout.id,
        _a.artifact_id == rollout.artifact_id,
        _a.open_key.is_not(None),
    )
    return int(await conn.scalar(query) or 0)


async def updated_terminals(
    conn: AsyncConnection, rollout_id: int, wave: int
) -> list[UpdatedTerminal]:
    """The wave's terminals whose Action succeeded, with when it began and ended."""
    query = (
        sa.select(_t.terminal_id, _a.created_at, _a.finished_at)
        .join(firmware_actions, _a.id == _t.action_id)
        .where(
            _t.rollout_id == rollout_id,
            _t.wave == wave,
            _a.state == ActionState.SUCCEEDED.value,
            _a.finished_at.is_not(None),
        )
        .order_by(_t.terminal_id)
    )
    return [UpdatedTerminal(tid, began, done) for tid, began, done in await conn.execute(query)]


async def set_wave(conn: AsyncConnection, rollout_id: int, wave: int, **values: object) -> None:
    """Update one wave's row."""
    await conn.execute(
        sa.update(rollout_groups).where(_g.rollout_id == rollout_id, _g.wave == wave).values(values)
    )


async def move_to_wave(
    conn: AsyncConnection, rollout_id: int, *, current: int, now: datetime
) -> bool:
    """Make the next wave current, if the rollout is still at ``current``."""
    result = await conn.execute(
        sa.update(rollouts)
        .where(_r.id == rollout_id, _r.current_wave == current)
        .values(current_wave=current + 1, updated_at=now)
    )
    return result.rowcount == 1
