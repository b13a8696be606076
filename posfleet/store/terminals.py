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
from posfleet.store.merchants import note_inventory_merchant
from posfleet.store.report_batch import OFFLINE_BY_LWT, Report, record_reports
from posfleet.store.schema import health_samples, merchants, terminal_search, terminals
from posfleet.store.terminal_filters import TerminalFilter, TerminalSort, keyset_page
from posfleet.store.terminal_search import (
    TerminalText,
    ensure_terminal_search,
    store_terminal_search,
)
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
    offline_reason: str | None = None
    """Why an offline terminal is offline: ``lwt`` (connection lost) or ``heartbeat``."""
    report_interval_s: int | None = None
    merchant_name: str = ""
    """The merchant's name: as staff set it, else as the terminal's inventory says."""
    site_name: str = ""


def _later(candidate: Any, current: sa.ColumnElement[datetime]) -> sa.ColumnElement[datetime]:
    """The later of two timestamps, portably (SQLite has no GREATEST)."""
    return sa.case(
        (sa.or_(current.is_(None), candidate > current), candidate),
        else_=current,
    )


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
        offline_reason=None if state.online else OFFLINE_BY_LWT,
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
            "offline_reason": new.offline_reason,
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
    if result.rowcount == 1:
        await ensure_terminal_search(conn, terminal_id)
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
    if result.rowcount != 1:
        return False
    merchant = None
    if inventory.merchant_id:
        merchant = await note_inventory_merchant(
            conn, inventory.merchant_id, inventory.merchant_name, now=now
        )
    searched = TerminalText(
        terminal_id,
        inventory.serial,
        inventory.model,
        inventory.merchant_id,
        inventory.merchant_name,
        inventory.site_id,
        inventory.site_name,
    )
    await store_terminal_search(conn, searched, merchant)
    return True


async def hardware_owner(
    conn: AsyncConnection, model: str, serial: str, *, other_than: str
) -> str | None:
    """The id of another *online* terminal that reported this model and serial, if any.

    One device online under two terminal ids means a device is publishing with another
    terminal's credentials; the ingest refuses the second one. A device re-provisioned
    under a new id while its old id is offline is not a conflict.
    """
    t = terminals.c
    query = (
        sa.select(t.terminal_id)
        .where(
            t.serial == serial,
            t.model == model,
            t.terminal_id != other_than,
            t.online == sa.true(),
        )
        .limit(1)
    )
    owner: str | None = await conn.scalar(query)
    return owner


async def apply_health(
    conn: AsyncConnection, terminal_id: str, report: HealthReport, *, now: datetime | None = None
) -> bool:
    """Store a health report; return False if this (terminal, seq) was already stored.

    One report at a time; the ingest stores whole batches with :func:`record_reports`.
    """
    fresh = await record_reports(conn, [Report(terminal_id, report)], now=now or utcnow())
    return fresh[0]


async def apply_event(
    conn: AsyncConnection, terminal_id: str, event: FaultEvent, *, now: datetime | None = None
) -> bool:
    """Store a fault event; return False if this (terminal, seq) was already stored."""
    fresh = await record_reports(conn, [Report(terminal_id, event)], now=now or utcnow())
    return fresh[0]


_LATEST_HEALTH = (
    sa.select(health_samples.c.metrics)
    .where(
        health_samples.c.terminal_id == terminals.c.terminal_id,
        health_samples.c.seq == terminals.c.health_seq,
    )
    .scalar_subquery()
    .label("health")
)
"""The newest report's metrics, looked up by primary key for each row returned."""

_NAMES = terminal_search.alias("names")
"""Its own alias: a search joins terminal_search too, and must not capture these lookups."""
_SEARCH_ROW = _NAMES.c.terminal_id == terminals.c.terminal_id
_MERCHANT_NAME = sa.func.coalesce(
    sa.select(merchants.c.name)
    .where(merchants.c.merchant_id == terminals.c.merchant_id, merchants.c.name != "")
    .scalar_subquery(),
    sa.select(_NAMES.c.merchant_name).where(_SEARCH_ROW).scalar_subquery(),
    "",
).label("merchant_name")
"""Staff's name for the merchant if any, else the inventory's; both by primary key."""
_SITE_NAME = sa.func.coalesce(
    sa.select(_NAMES.c.site_name).where(_SEARCH_ROW).scalar_subquery(), ""
).label("site_name")
_COMPUTED = {"health": _LATEST_HEALTH, "merchant_name": _MERCHANT_NAME, "site_name": _SITE_NAME}

_RECORD_COLUMNS = [
    _COMPUTED[name] if name in _COMPUTED else terminals.c[name]
    for name in TerminalRecord.model_fields
]


def _record(row: sa.Row[Any]) -> TerminalRecord:
    data = dict(row._mapping)
    data["app_versions"] = data["app_versions"] or {}
    data["capabilities"] = data["capabilities"] or []
    return TerminalRecord.model_validate(data)


async def list_terminals(
    conn: AsyncConnection,
    *,
    online: bool | None = None,
    limit: int = 100,
    after: str | None = None,
    where: TerminalFilter | None = None,
    sort: TerminalSort = TerminalSort.TERMINAL_ID,
) -> list[TerminalRecord]:
    """One page of terminals; pass the last id of a page as ``after`` for the next.

    ``where`` narrows the list (model, firmware, merchant, site, free text; see
    :class:`TerminalFilter`), ``online`` by presence, and ``sort`` orders it. Keyset
    pagination stays fast and stable on a large fleet while terminals come and go,
    where OFFSET would skip or repeat rows.
    """
    query = sa.select(*_RECORD_COLUMNS)
    if online is not None:
        query = query.where(terminals.c.online == online)
    if where is not None:
        query = query.where(*where.conditions(conn.dialect.name))
    query = keyset_page(query, sort, after)
    query = query.limit(max(1, min(limit, MAX_PAGE)))
    rows = (await conn.execute(query)).all()
    return [_record(row) for row in rows]


async def get_terminal(conn: AsyncConnection, terminal_id: str) -> TerminalRecord | None:
    """The terminal's record, or None if the centre never heard from it."""
    query = sa.select(*_RECORD_COLUMNS).where(terminals.c.terminal_id == terminal_id)
    row = (await conn.execute(query)).first()
    return None if row is None else _record(row)
