"""The fleet registry: one row per terminal, kept current from its messages.

Every function takes an open :class:`AsyncConnection` and leaves the transaction to the
caller, so the ingest bridge stores a whole batch atomically. The functions are
idempotent: MQTT QoS 1 delivers at least once, and a redelivered message must change
nothing but the duplicate counter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import FaultEvent, HealthMetrics, HealthReport, Inventory, State, utcnow
from posfleet.store.schema import fault_events, health_samples, terminals
from posfleet.store.upsert import insert_for

MAX_PAGE = 1000
"""Largest page :func:`list_terminals` returns, whatever ``limit`` asks for."""


class TerminalRecord(pydantic.BaseModel):
    """What the centre knows about one terminal, as the dashboard shows it."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    online: bool
    first_seen: datetime
    last_seen: datetime
    state_changed_at: datetime | None
    agent_version: str | None
    boot_id: str | None
    model: str | None
    serial: str | None
    hw_revision: str | None
    firmware_version: str | None
    app_versions: dict[str, str]
    merchant_id: str | None
    site_id: str | None
    timezone: str | None
    capabilities: list[str]
    health: HealthMetrics | None
    health_at: datetime | None
    health_seq: int | None
    last_seq: int | None
    seq_gaps: int
    seq_duplicates: int


def _later(candidate: Any, current: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """The later of two timestamps, portably (SQLite has no GREATEST)."""
    return sa.case(
        (sa.or_(current.is_(None), candidate > current), candidate),
        else_=current,
    )


async def _touch(conn: AsyncConnection, terminal_id: str, now: datetime) -> None:
    """Make sure the terminal's row exists and note that it was heard from."""
    stmt = insert_for(conn, terminals).values(
        terminal_id=terminal_id, first_seen=now, last_seen=now
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[terminals.c.terminal_id],
        set_={"last_seen": _later(stmt.excluded.last_seen, terminals.c.last_seen)},
    )
    await conn.execute(stmt)


async def apply_state(
    conn: AsyncConnection, terminal_id: str, state: State, *, now: datetime | None = None
) -> bool:
    """Record a birth message or LWT; return False if it was older than what is stored.

    Messages are applied in arrival order within one boot (the broker keeps per-topic
    order, and an LWT carries the ts of the connect it was registered at). A state from
    a *different* boot that is older than the stored one is a stale retained copy and
    is ignored, so a late redelivery cannot resurrect a previous boot.
    """
    now = now or utcnow()
    t = terminals.c
    stmt = insert_for(conn, terminals).values(
        terminal_id=terminal_id,
        online=state.online,
        agent_version=state.agent_version,
        boot_id=state.boot_id,
        state_at=state.ts,
        state_changed_at=now,
        first_seen=now,
        last_seen=now,
    )
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.terminal_id],
        set_={
            "online": new.online,
            "agent_version": new.agent_version,
            "boot_id": new.boot_id,
            "state_at": new.state_at,
            "state_changed_at": sa.case(
                (
                    sa.or_(t.state_changed_at.is_(None), t.online != new.online),
                    new.state_changed_at,
                ),
                else_=t.state_changed_at,
            ),
            # The broker publishes the LWT, so an offline state is no sign of life.
            "last_seen": sa.case(
                (new.online, _later(new.last_seen, t.last_seen)), else_=t.last_seen
            ),
        },
        where=sa.or_(t.state_at.is_(None), t.boot_id == new.boot_id, new.state_at >= t.state_at),
    )
    result = await conn.execute(stmt)
    return result.rowcount == 1


async def apply_inventory(
    conn: AsyncConnection, terminal_id: str, inventory: Inventory, *, now: datetime | None = None
) -> bool:
    """Record what the terminal is; return False if it was older than what is stored."""
    now = now or utcnow()
    t = terminals.c
    stmt = insert_for(conn, terminals).values(
        terminal_id=terminal_id,
        model=inventory.model,
        serial=inventory.serial,
        hw_revision=inventory.hw_revision,
        firmware_version=inventory.firmware_version,
        app_versions=dict(inventory.app_versions),
        agent_version=inventory.agent_version,
        merchant_id=inventory.merchant_id,
        site_id=inventory.site_id,
        timezone=inventory.timezone,
        capabilities=list(inventory.capabilities),
        inventory_at=inventory.ts,
        first_seen=now,
        last_seen=now,
    )
    new = stmt.excluded
    fields = (
        "model",
        "serial",
        "hw_revision",
        "firmware_version",
        "app_versions",
        "agent_version",
        "merchant_id",
        "site_id",
        "timezone",
        "capabilities",
        "inventory_at",
    )
    set_: dict[str, Any] = {name: new[name] for name in fields}
    set_["last_seen"] = _later(new.last_seen, t.last_seen)
    stmt = stmt.on_conflict_do_update(
        index_elements=[t.terminal_id],
        set_=set_,
        where=sa.or_(t.inventory_at.is_(None), new.inventory_at >= t.inventory_at),
    )
    result = await conn.execute(stmt)
    return result.rowcount == 1


async def _count_duplicate(conn: AsyncConnection, terminal_id: str) -> None:
    await conn.execute(
        sa.update(terminals)
        .where(terminals.c.terminal_id == terminal_id)
        .values(seq_duplicates=terminals.c.seq_duplicates + 1)
    )


async def _advance_seq(conn: AsyncConnection, terminal_id: str, seq: int) -> None:
    """Account for a newly stored ``seq`` in one atomic UPDATE.

    A jump past ``last_seq + 1`` adds the skipped numbers to ``seq_gaps``; a late arrival
    below ``last_seq`` (an outbox replay overtaken by live reports) fills one of them.
    The first seq ever seen opens the count: earlier history is unknown, not lost.
    """
    t = terminals.c
    value = sa.literal(seq, sa.BigInteger())
    gap_delta = sa.case(
        (t.last_seq.is_(None), 0),
        (value > t.last_seq, value - t.last_seq - 1),
        (sa.and_(value < t.last_seq, t.seq_gaps > 0), -1),
        else_=0,
    )
    await conn.execute(
        sa.update(terminals)
        .where(t.terminal_id == terminal_id)
        .values(
            seq_gaps=t.seq_gaps + gap_delta,
            last_seq=sa.case(
                (sa.or_(t.last_seq.is_(None), value > t.last_seq), value), else_=t.last_seq
            ),
        )
    )


async def apply_health(
    conn: AsyncConnection, terminal_id: str, report: HealthReport, *, now: datetime | None = None
) -> bool:
    """Store a health report; return False if this (terminal, seq) was already stored."""
    now = now or utcnow()
    await _touch(conn, terminal_id, now)
    metrics = report.metrics.model_dump(mode="json", exclude_none=True)
    stmt = (
        insert_for(conn, health_samples)
        .values(terminal_id=terminal_id, seq=report.seq, ts=report.ts, metrics=metrics)
        .on_conflict_do_nothing(index_elements=["terminal_id", "seq"])
    )
    if (await conn.execute(stmt)).rowcount != 1:
        await _count_duplicate(conn, terminal_id)
        return False
    await _advance_seq(conn, terminal_id, report.seq)
    t = terminals.c
    # A report that arrives late (outbox replay) is kept as a sample but must not
    # replace a newer "latest health".
    await conn.execute(
        sa.update(terminals)
        .where(t.terminal_id == terminal_id)
        .where(sa.or_(t.health_seq.is_(None), t.health_seq < report.seq))
        .values(health=metrics, health_at=report.ts, health_seq=report.seq)
    )
    return True


async def apply_event(
    conn: AsyncConnection, terminal_id: str, event: FaultEvent, *, now: datetime | None = None
) -> bool:
    """Store a fault event; return False if this (terminal, seq) was already stored."""
    now = now or utcnow()
    await _touch(conn, terminal_id, now)
    stmt = (
        insert_for(conn, fault_events)
        .values(
            terminal_id=terminal_id,
            seq=event.seq,
            ts=event.ts,
            code=event.code,
            component=event.component.value,
            severity=event.severity.value,
            detail=event.detail,
            zvt_result_code=event.zvt_result_code,
        )
        .on_conflict_do_nothing(index_elements=["terminal_id", "seq"])
    )
    if (await conn.execute(stmt)).rowcount != 1:
        await _count_duplicate(conn, terminal_id)
        return False
    await _advance_seq(conn, terminal_id, event.seq)
    return True


_RECORD_COLUMNS = [terminals.c[name] for name in TerminalRecord.model_fields]


def _record(row: sa.Row[Any]) -> TerminalRecord:
    data = dict(row._mapping)
    data["app_versions"] = data["app_versions"] or {}
    data["capabilities"] = data["capabilities"] or []
    return TerminalRecord.model_validate(data)


async def list_terminals(
    conn: AsyncConnection, *, online: bool | None = None, limit: int = 100, after: str | None = None
) -> list[TerminalRecord]:
    """One page of terminals ordered by id; pass the last id seen as ``after`` for the next.

    Keyset pagination stays fast and stable on a large fleet while terminals come and go,
    where OFFSET would skip or repeat rows.
    """
    query = sa.select(*_RECORD_COLUMNS).order_by(terminals.c.terminal_id)
    if online is not None:
        query = query.where(terminals.c.online == online)
    if after is not None:
        query = query.where(terminals.c.terminal_id > after)
    query = query.limit(max(1, min(limit, MAX_PAGE)))
    rows = (await conn.execute(query)).all()
    return [_record(row) for row in rows]


async def get_terminal(conn: AsyncConnection, terminal_id: str) -> TerminalRecord | None:
    """The terminal's record, or None if the centre never heard from it."""
    query = sa.select(*_RECORD_COLUMNS).where(terminals.c.terminal_id == terminal_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)
