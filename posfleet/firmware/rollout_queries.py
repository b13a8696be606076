"""Reading rollouts: records with their waves, counts and transitions; candidates.

The records are :mod:`posfleet.firmware.rollout_records`; every function takes an open
connection and leaves the transaction to the caller.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.firmware.action_states import ActionState
from posfleet.firmware.rollout_model import (
    Candidate,
    GateVerdict,
    RolloutPolicy,
    RolloutState,
    TargetFilter,
    WaveProgress,
    WaveState,
)
from posfleet.firmware.rollout_records import (
    RolloutNotFoundError,
    RolloutRecord,
    TransitionRecord,
    WaveCounts,
    WaveRecord,
)
from posfleet.store.column_types import UtcDateTime
from posfleet.store.schema import (
    firmware_actions,
    firmware_artifacts,
    rollout_groups,
    rollout_targets,
    rollout_transitions,
    rollouts,
    terminals,
)

MAX_PAGE = 200
"""Largest page :func:`list_rollouts` returns."""

_r = rollouts.c
_art = firmware_artifacts.alias("artifact")
_back = firmware_artifacts.alias("rollback_artifact")
_ROLLOUT_QUERY = sa.select(
    rollouts,
    _art.c.name.label("artifact_name"),
    _art.c.version.label("artifact_version"),
    _back.c.name.label("rollback_name"),
    _back.c.version.label("rollback_version"),
).select_from(
    rollouts.join(_art, _art.c.id == _r.artifact_id).outerjoin(
        _back, _back.c.id == _r.rollback_artifact_id
    )
)
_SUCCEEDED = ActionState.SUCCEEDED.value
_FINAL_NAMES = sorted(s.value for s in ActionState if s.final)


def _rollout_of(row: sa.Row[Any], **extra: Any) -> RolloutRecord:
    data = dict(row._mapping)
    back = data.pop("rollback_name"), data.pop("rollback_version")
    name, version = data.pop("artifact_name"), data.pop("artifact_version")
    data.pop("target_filter")
    data.pop("policy")
    return RolloutRecord(
        **{k: v for k, v in data.items() if k != "state"},
        state=RolloutState(row.state),
        artifact=f"{name}@{version}",
        version=version,
        rollback_artifact=None if back[0] is None else f"{back[0]}@{back[1]}",
        target=TargetFilter.from_json(row.target_filter),
        policy=RolloutPolicy.from_json(row.policy),
        **extra,
    )


async def get_rollout(
    conn: AsyncConnection, rollout_id: int, *, for_update: bool = False
) -> RolloutRecord:
    """The rollout with its waves, counts and transitions; :class:`RolloutNotFoundError`.

    ``for_update`` locks the row (PostgreSQL) for a command that reads, then writes;
    ``FOR NO KEY UPDATE``, so new Actions and targets that refer to the rollout are not
    held up by it.
    """
    query = _ROLLOUT_QUERY.where(_r.id == rollout_id)
    if for_update and conn.dialect.name == "postgresql":
        query = query.with_for_update(of=rollouts, key_share=True)
    row = (await conn.execute(query)).first()
    if row is None:
        raise RolloutNotFoundError(rollout_id)
    bare = _rollout_of(row)
    counts = await _counts(conn, [rollout_id])
    waves = await _waves(conn, bare, counts.get(rollout_id, {}))
    return _rollout_of(
        row,
        waves=waves,
        totals=_sum(counts.get(rollout_id, {}).values()),
        excluded=(await _excluded(conn, [rollout_id])).get(rollout_id, {}),
        transitions=tuple(await list_transitions(conn, rollout_id)),
    )


async def list_rollouts(
    conn: AsyncConnection,
    *,
    states: Sequence[RolloutState] | None = None,
    artifact_id: int | None = None,
    limit: int = 50,
    before_id: int | None = None,
) -> list[RolloutRecord]:
    """Rollouts newest first, with waves and counts (not transitions); ``before_id`` pages."""
    query = _ROLLOUT_QUERY.order_by(_r.id.desc()).limit(max(1, min(limit, MAX_PAGE + 1)))
    if states:
        query = query.where(_r.state.in_([str(s) for s in states]))
    if artifact_id is not None:
        query = query.where(_r.artifact_id == artifact_id)
    if before_id is not None:
        query = query.where(_r.id < before_id)
    rows = (await conn.execute(query)).all()
    ids = [int(row.id) for row in rows]
    counts = await _counts(conn, ids)
    excluded = await _excluded(conn, ids)
    records = []
    for row in rows:
        mine = counts.get(int(row.id), {})
        waves = await _waves(conn, _rollout_of(row), mine)
        records.append(
            _rollout_of(
                row, waves=waves, totals=_sum(mine.values()), excluded=excluded.get(row.id, {})
            )
        )
    return records


async def list_transitions(conn: AsyncConnection, rollout_id: int) -> list[TransitionRecord]:
    """The rollout's transitions, oldest first."""
    t = rollout_transitions.c
    query = sa.select(rollout_transitions).where(t.rollout_id == rollout_id).order_by(t.id)
    return [
        TransitionRecord(
            id=int(row.id),
            ts=row.ts,
            command=row.command,
            from_state=None if row.from_state is None else RolloutState(row.from_state),
            to_state=RolloutState(row.to_state),
            actor=row.actor,
            reason_code=row.reason_code,
            reason_text=row.reason_text,
        )
        for row in await conn.execute(query)
    ]


async def _counts(
    conn: AsyncConnection, rollout_ids: Sequence[int]
) -> dict[int, dict[int, WaveCounts]]:
    """Per rollout and wave: targets, and their Actions' outcomes."""
    if not rollout_ids:
        return {}
    t, a = rollout_targets.c, firmware_actions.c
    query = (
        sa.select(t.rollout_id, t.wave, a.state, t.joined_late, sa.func.count())
        .select_from(rollout_targets.outerjoin(firmware_actions, a.id == t.action_id))
        .where(t.rollout_id.in_(list(rollout_ids)), t.excluded_reason.is_(None))
        .group_by(t.rollout_id, t.wave, a.state, t.joined_late)
    )
    raw: dict[int, dict[int, dict[str, int]]] = {}
    for rollout_id, wave, state, late, count in await conn.execute(query):
        tally = raw.setdefault(int(rollout_id), {}).setdefault(
            int(wave), dict.fromkeys(("terminals", "succeeded", "failed", "open", "late"), 0)
        )
        tally["terminals"] += count
        tally["late"] += count if late else 0
        if state == _SUCCEEDED:
            tally["succeeded"] += count
        elif state in _FINAL_NAMES:
            tally["failed"] += count
        elif state is not None:
            tally["open"] += count
    return {
        rid: {
            w: WaveCounts(c["terminals"], c["succeeded"], c["failed"], c["open"], c["late"])
            for w, c in waves.items()
        }
        for rid, waves in raw.items()
    }


async def _excluded(conn: AsyncConnection, rollout_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    if not rollout_ids:
        return {}
    t = rollout_targets.c
    query = (
        sa.select(t.rollout_id, t.excluded_reason, sa.func.count())
        .where(t.rollout_id.in_(list(rollout_ids)), t.excluded_reason.is_not(None))
        .group_by(t.rollout_id, t.excluded_reason)
    )
    found: dict[int, dict[str, int]] = {}
    for rollout_id, reason, count in await conn.execute(query):
        found.setdefault(int(rollout_id), {})[str(reason)] = int(count)
    return found


def _sum(counts: Iterable[WaveCounts]) -> WaveCounts:
    total = [0, 0, 0, 0, 0]
    for c in counts:
        for i, value in enumerate((c.terminals, c.succeeded, c.failed, c.in_progress,
                                   c.joined_late)):  # fmt: skip
            total[i] += value
    return WaveCounts(*total)


async def _waves(
    conn: AsyncConnection, rollout: RolloutRecord, counts: dict[int, WaveCounts]
) -> tuple[WaveRecord, ...]:
    g = rollout_groups.c
    rows = (
        await conn.execute(
            sa.select(rollout_groups).where(g.rollout_id == rollout.id).order_by(g.wave)
        )
    ).all()
    specs = rollout.policy.waves
    waves = []
    for row in rows:
        gate = dict(row.gate or {})
        waves.append(
            WaveRecord(
                wave=int(row.wave),
                state=WaveState(row.state),
                spec=specs[min(int(row.wave), len(specs) - 1)],
                planned=int(row.planned),
                counts=counts.get(int(row.wave), WaveCounts()),
                started_at=row.started_at,
                soak_until=row.soak_until,
                finished_at=row.finished_at,
                gate=GateVerdict.from_json(gate) if "before" in gate else None,
                gate_detail=gate,
                reason=row.reason,
                accepted_by=row.accepted_by,
            )
        )
    return tuple(waves)


def progress_of(
    wave: WaveRecord, *, started_at: datetime, all_final_at: datetime | None
) -> WaveProgress:
    """The machine's view of one wave (``started_at`` if the wave has not recorded one)."""
    c = wave.counts
    return WaveProgress(
        wave=wave.wave,
        total=c.terminals,
        succeeded=c.succeeded,
        failed=c.failed,
        in_progress=c.in_progress,
        started_at=wave.started_at or started_at,
        all_final_at=all_final_at,
    )


async def all_final_at(conn: AsyncConnection, rollout_id: int, wave: int) -> datetime | None:
    """When the wave's last Action became final; None while any is open or not offered."""
    t, a = rollout_targets.c, firmware_actions.c
    base = rollout_targets.outerjoin(firmware_actions, a.id == t.action_id)
    mine = sa.and_(t.rollout_id == rollout_id, t.wave == wave, t.excluded_reason.is_(None))
    row = (
        await conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(a.finished_at),
                # Typed, so that SQLite's text comes back as an aware datetime.
                sa.func.max(a.finished_at, type_=UtcDateTime()),
            )
            .select_from(base)
            .where(mine)
        )
    ).one()
    total, finished, latest = row
    if not total or finished < total:
        return None
    found: datetime | None = latest
    return found


async def load_candidates(
    conn: AsyncConnection, *, terminal_ids: Sequence[str] | None = None
) -> list[Candidate]:
    """Terminals as the planner sees them (all, or these), with whether they are busy."""
    t = terminals.c
    busy_query = sa.select(firmware_actions.c.open_key).where(
        firmware_actions.c.open_key.is_not(None)
    )
    query = sa.select(
        t.terminal_id,
        t.model,
        t.merchant_id,
        t.site_id,
        t.firmware_version,
        t.timezone,
        t.online,
        t.last_seen,
    )
    if terminal_ids is not None:
        if not terminal_ids:
            return []
        wanted = list(terminal_ids)
        query = query.where(t.terminal_id.in_(wanted))
        busy_query = busy_query.where(firmware_actions.c.open_key.in_(wanted))
    # One set of the open Actions' terminals rather than a subquery per row: a preview
    # reads the whole fleet (100,000 rows), and this halves its time.
    busy = set((await conn.execute(busy_query)).scalars())
    # The registry keeps no tags yet: a tag filter matches no terminal.
    return [
        Candidate(tid, model, merchant, site, (), version, zone or "UTC", bool(online), seen,
                  tid in busy)
        for tid, model, merchant, site, version, zone, online, seen in await conn.execute(
            query.order_by(t.terminal_id)
        )
    ]  # fmt: skip
