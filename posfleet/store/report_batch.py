"""Health reports and fault events, stored a batch at a time.

Per batch, whatever its size: one read of the terminals involved (locked on PostgreSQL,
in id order so that two instances cannot deadlock) plus an insert of any not seen
before; one multi-row ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` per table, which
tells which reports are new (the (terminal, seq) key makes redelivery harmless); one
``executemany`` UPDATE carrying each terminal's aggregated changes (sequence gaps and
duplicates, last seen, heartbeat deadline, latest health); and one ``INSERT ... SELECT``
that merges the batch's new samples into the hourly rollups inside the database.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import FaultEvent, HealthReport
from posfleet.store.health_rollups import merge_batch_rollups
from posfleet.store.schema import fault_events, health_samples, terminals
from posfleet.store.upsert import insert_for

HEARTBEAT_MISSES = 2
"""A terminal is offline once this many report intervals pass without a report."""

OFFLINE_BY_LWT = "lwt"
OFFLINE_BY_SILENCE = "heartbeat"
"""Values of ``terminals.offline_reason``: the broker's LWT, or reports that stopped."""


@dataclass(frozen=True, slots=True)
class Report:
    """One health report or fault event from a terminal, already validated."""

    terminal_id: str
    payload: HealthReport | FaultEvent


@dataclass(slots=True)
class _TerminalChange:
    """What one batch does to one terminal's row."""

    fresh_seqs: list[int] = field(default_factory=list)
    duplicates: int = 0
    latest: HealthReport | None = None
    latest_json: str = ""


def json_param(conn: AsyncConnection, name: str) -> sa.ColumnElement[Any]:
    """A bind parameter taking JSON that is already serialised (pydantic's fast path).

    Skips the JSON type's own ``json.dumps`` of a dict, the costliest step of a report.
    """
    param = sa.bindparam(name, type_=sa.Text())
    if conn.dialect.name == "postgresql":
        return sa.cast(param, postgresql.JSONB())
    return param


async def record_reports(
    conn: AsyncConnection, reports: Sequence[Report], *, now: datetime
) -> list[bool]:
    """Store ``reports`` in the caller's transaction; True for each one not seen before."""
    if not reports:
        return []
    current = await _lock_terminals(conn, sorted({r.terminal_id for r in reports}), now)
    batch_id = secrets.randbits(62)
    metrics_json: dict[int, str] = {}
    health_rows: list[dict[str, Any]] = []
    event_rows: list[dict[str, Any]] = []
    for i, r in enumerate(reports):
        if isinstance(r.payload, HealthReport):
            text = r.payload.metrics.model_dump_json(exclude_none=True)
            metrics_json[i] = text
            health_rows.append(
                {
                    "terminal_id": r.terminal_id,
                    "seq": r.payload.seq,
                    "ts": r.payload.ts,
                    "m": text,
                    "batch_id": batch_id,
                }
            )
        else:
            event_rows.append(_event_row(r))
    fresh_keys: set[tuple[str, int]] = set()
    if health_rows:
        fresh_keys |= await _insert_new(conn, _health_insert(conn), _unique(health_rows))
    if event_rows:
        fresh_keys |= await _insert_new(conn, _event_insert(conn), _unique(event_rows))

    fresh: list[bool] = []
    changes: dict[str, _TerminalChange] = {tid: _TerminalChange() for tid in current}
    any_new_sample = False
    for i, r in enumerate(reports):
        key = (r.terminal_id, r.payload.seq)
        change = changes[r.terminal_id]
        # The same report twice in one batch: the second copy is a duplicate too.
        is_new = key in fresh_keys
        fresh_keys.discard(key)
        fresh.append(is_new)
        if not is_new:
            change.duplicates += 1
            continue
        change.fresh_seqs.append(r.payload.seq)
        if isinstance(r.payload, HealthReport):
            any_new_sample = True
            if change.latest is None or r.payload.seq > change.latest.seq:
                change.latest, change.latest_json = r.payload, metrics_json[i]
    await _update_terminals(conn, current, changes, now)
    if any_new_sample:
        await merge_batch_rollups(conn, batch_id)
    return fresh


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # PostgreSQL refuses one INSERT that conflicts with itself; keep the first copy.
    seen: dict[tuple[str, int], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault((row["terminal_id"], row["seq"]), row)
    return list(seen.values())


async def _lock_terminals(
    conn: AsyncConnection, ids: list[str], now: datetime
) -> dict[str, sa.Row[Any]]:
    """The rows of ``ids``, created first where missing; locked on PostgreSQL."""
    current = await _read_terminals(conn, ids)
    missing = [i for i in ids if i not in current]
    if missing:
        stmt = insert_for(conn, terminals).on_conflict_do_nothing(index_elements=["terminal_id"])
        await conn.execute(
            stmt, [{"terminal_id": i, "first_seen": now, "last_seen": now} for i in missing]
        )
        current.update(await _read_terminals(conn, missing))
    return current


async def _read_terminals(conn: AsyncConnection, ids: list[str]) -> dict[str, sa.Row[Any]]:
    t = terminals.c
    query: sa.Select[Any] = sa.select(
        t.terminal_id,
        t.last_seq,
        t.seq_gaps,
        t.health_seq,
        t.online,
        t.offline_reason,
        t.report_interval_s,
    ).where(t.terminal_id.in_(ids))
    if conn.dialect.name == "postgresql":
        query = query.order_by(t.terminal_id).with_for_update()
    return {row.terminal_id: row for row in (await conn.execute(query)).all()}


def _health_insert(conn: AsyncConnection) -> Any:
    stmt = insert_for(conn, health_samples).values(
        terminal_id=sa.bindparam("terminal_id"),
        seq=sa.bindparam("seq"),
        ts=sa.bindparam("ts"),
        metrics=json_param(conn, "m"),
        batch_id=sa.bindparam("batch_id"),
    )
    return stmt.on_conflict_do_nothing(index_elements=["terminal_id", "seq"]).returning(
        health_samples.c.terminal_id, health_samples.c.seq
    )


def _event_insert(conn: AsyncConnection) -> Any:
    stmt = insert_for(conn, fault_events).on_conflict_do_nothing(
        index_elements=["terminal_id", "seq"]
    )
    return stmt.returning(fault_events.c.terminal_id, fault_events.c.seq)


def _event_row(report: Report) -> dict[str, Any]:
    event = report.payload
    assert isinstance(event, FaultEvent)
    return {
        "terminal_id": report.terminal_id,
        "seq": event.seq,
        "ts": event.ts,
        "code": event.code,
        "component": event.component.value,
        "severity": event.severity.value,
        "detail": event.detail,
        "zvt_result_code": event.zvt_result_code,
    }


async def _insert_new(
    conn: AsyncConnection, stmt: Any, rows: list[dict[str, Any]]
) -> set[tuple[str, int]]:
    result = await conn.execute(stmt, rows)
    return {(tid, seq) for tid, seq in result.all()}


async def _update_terminals(
    conn: AsyncConnection,
    current: dict[str, sa.Row[Any]],
    changes: dict[str, _TerminalChange],
    now: datetime,
) -> None:
    t = terminals.c
    rows: list[dict[str, Any]] = []
    revived: list[str] = []
    for terminal_id, change in changes.items():
        row = current[terminal_id]
        last_seq, gaps = _advance(row.last_seq, row.seq_gaps, change.fresh_seqs)
        latest = change.latest
        if latest is not None and row.health_seq is not None and latest.seq <= row.health_seq:
            latest = None  # a late report (outbox replay) must not replace newer health
        if (
            change.latest is not None
            and not row.online
            and row.offline_reason == (OFFLINE_BY_SILENCE)
        ):
            revived.append(terminal_id)
        interval = change.latest.interval_s if change.latest else None
        rows.append(
            {
                "b_id": terminal_id,
                "b_last_seq": last_seq,
                "b_gaps": gaps,
                "b_dups": change.duplicates,
                "b_interval": interval,
                "b_due": now + timedelta(seconds=HEARTBEAT_MISSES * interval) if interval else None,
                "h": change.latest_json if latest is not None else None,
                "b_at": latest.ts if latest is not None else None,
                "b_seq": latest.seq if latest is not None else None,
            }
        )
    now_param = sa.literal(now, terminals.c.last_seen.type)
    await conn.execute(
        sa.update(terminals)
        .where(t.terminal_id == sa.bindparam("b_id"))
        .values(
            last_seq=sa.bindparam("b_last_seq", type_=sa.BigInteger()),
            seq_gaps=sa.bindparam("b_gaps", type_=sa.Integer()),
            seq_duplicates=t.seq_duplicates + sa.bindparam("b_dups", type_=sa.Integer()),
            last_seen=sa.case((t.last_seen < now_param, now_param), else_=t.last_seen),
            report_interval_s=sa.func.coalesce(
                sa.bindparam("b_interval", type_=sa.Integer()), t.report_interval_s
            ),
            heartbeat_due_at=sa.func.coalesce(
                sa.bindparam("b_due", type_=t.heartbeat_due_at.type), t.heartbeat_due_at
            ),
            health=sa.func.coalesce(json_param(conn, "h"), t.health),
            health_at=sa.func.coalesce(sa.bindparam("b_at", type_=t.health_at.type), t.health_at),
            health_seq=sa.func.coalesce(sa.bindparam("b_seq", type_=sa.BigInteger()), t.health_seq),
        ),
        rows,
    )
    if revived:
        # Reports again after the sweeper gave it up for silent: online once more.
        await conn.execute(
            sa.update(terminals)
            .where(t.terminal_id.in_(revived))
            .values(online=True, offline_reason=None, state_changed_at=now)
        )


def _advance(last_seq: int | None, gaps: int, fresh: list[int]) -> tuple[int | None, int]:
    """Account for newly stored sequence numbers, in arrival order.

    A jump past ``last_seq + 1`` adds the skipped numbers to the gaps; a late arrival
    below ``last_seq`` (an outbox replay overtaken by live reports) fills one of them.
    The first seq ever seen opens the count: earlier history is unknown, not lost.
    """
    for seq in fresh:
        if last_seq is None:
            last_seq = seq
        elif seq > last_seq:
            gaps += seq - last_seq - 1
            last_seq = seq
        elif gaps > 0:
            gaps -= 1
    return last_seq, gaps
