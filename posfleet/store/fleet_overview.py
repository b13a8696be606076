"""The fleet at a glance: every figure of the overview page, from index-only reads.

Nothing here scans a table. The fleet by presence, model and firmware version is one
pass over ``ix_terminals_model_firmware_version_online`` (narrow: three short columns);
the unresolved incidents are counted from their stretch of
``ix_incidents_state_kind_severity_terminal_id``; incidents per day are range counts on
``opened_at``; today's ingest is told by the sample numbering (``stored_id``) between
two index probes; the rest (dead letters, cases, rollouts) are range counts on their
own indexes. docs/overview.md has
the measurements behind these choices.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import Severity
from posfleet.store.cases import count_follow_ups_due
from posfleet.store.schema import dead_letters, health_samples, incidents, rollouts, terminals

UNRESOLVED_STATES = ("open", "acknowledged")
HISTORY_DAYS = 30
"""How many UTC days the incident history reaches back, today included."""
OPEN_ROLLOUT_STATES = ("awaiting_approval", "running", "paused")
"""Rollouts someone has to watch or decide on: approved-and-going, held, or waiting."""


class _Frozen(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class TerminalGroup(_Frozen):
    """The terminals sharing one model or one firmware version."""

    value: str | None
    """The model or version; None for terminals that sent no inventory yet."""
    terminals: int
    online: int


class SeverityCount(_Frozen):
    """Unresolved terminal incidents of one severity."""

    severity: Severity
    count: int


class DayCount(_Frozen):
    """Incidents opened on one UTC day (a fleet incident and each terminal's count)."""

    day: date
    opened: int


class IngestToday(_Frozen):
    """Health reports stored since midnight UTC, and how fast they arrive."""

    reports_today: int
    per_minute_today: float
    """The average since midnight UTC."""
    per_minute_last_hour: float


class CasesDue(_Frozen):
    """Follow-ups of cases not closed: due today, and past their day."""

    due_today: int
    overdue: int


class OpenRollouts(_Frozen):
    """Rollouts by the states that need watching."""

    running: int
    paused: int
    awaiting_approval: int


class FleetOverview(_Frozen):
    """Every figure of ``/overview`` and ``GET /api/v1/overview``."""

    generated_at: datetime
    terminals: int
    online: int
    offline: int
    faulty: int
    """Terminals with at least one unresolved incident."""
    by_model: list[TerminalGroup]
    """Largest first."""
    by_firmware: list[TerminalGroup]
    """Largest first."""
    open_incidents: list[SeverityCount]
    """Unresolved terminal incidents per severity, most urgent first (zeros included)."""
    fleet_incidents: int
    """Unresolved fleet incidents (one problem shared by many terminals)."""
    incidents_per_day: list[DayCount]
    """The last :data:`HISTORY_DAYS` UTC days, oldest first, today last."""
    ingest: IngestToday
    dead_letters_today: int
    """Kinds of rejected message (one row per topic, error and payload) seen today."""
    cases: CasesDue
    rollouts: OpenRollouts


def _midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(), tzinfo=UTC)


async def _terminal_groups(
    conn: AsyncConnection,
) -> tuple[int, int, list[TerminalGroup], list[TerminalGroup]]:
    c = terminals.c
    query = sa.select(c.model, c.firmware_version, c.online, sa.func.count()).group_by(
        c.model, c.firmware_version, c.online
    )
    online = offline = 0
    models: dict[str | None, list[int]] = {}
    versions: dict[str | None, list[int]] = {}
    for model, version, is_online, found in await conn.execute(query):
        count = int(found)
        up = count if is_online else 0
        online, offline = online + up, offline + (count - up)
        for groups, key in ((models, model), (versions, version)):
            figures = groups.setdefault(key, [0, 0])
            figures[0] += count
            figures[1] += up

    def ranked(groups: dict[str | None, list[int]]) -> list[TerminalGroup]:
        rows = [TerminalGroup(value=k, terminals=t, online=o) for k, (t, o) in groups.items()]
        return sorted(rows, key=lambda g: (-g.terminals, g.value is None, g.value or ""))

    return online, offline, ranked(models), ranked(versions)


async def _unresolved(conn: AsyncConnection) -> tuple[int, list[SeverityCount], int]:
    i = incidents.c
    # Led by state, ix_incidents_state_kind_severity_terminal_id answers both queries alone.
    unresolved = i.state.in_(UNRESOLVED_STATES)
    faulty_query = sa.select(sa.func.count(sa.distinct(i.terminal_id))).where(
        unresolved, i.terminal_id.is_not(None)
    )
    faulty = int((await conn.execute(faulty_query)).scalar_one())
    grouped = sa.select(i.kind, i.severity, sa.func.count()).where(unresolved)
    by_severity = {s: 0 for s in Severity}
    fleet = 0
    for kind, severity, count in await conn.execute(grouped.group_by(i.kind, i.severity)):
        if kind == "fleet":
            fleet += int(count)
        elif severity in by_severity:
            by_severity[Severity(severity)] += int(count)
    ordered = [SeverityCount(severity=s, count=by_severity[s]) for s in reversed(Severity)]
    return faulty, ordered, fleet


async def _per_day(conn: AsyncConnection, today: datetime) -> list[DayCount]:
    opened = incidents.c.opened_at
    starts = [today - timedelta(days=HISTORY_DAYS - 1 - n) for n in range(HISTORY_DAYS)]
    # One range count per day in one statement: each reads only its stretch of the index.
    counts = [
        sa.select(sa.func.count())
        .where(opened >= start, opened < start + timedelta(days=1))
        .scalar_subquery()
        for start in starts
    ]
    row = (await conn.execute(sa.select(*counts))).one()
    return [DayCount(day=s.date(), opened=int(n)) for s, n in zip(starts, row, strict=True)]


async def _first_sample_since(conn: AsyncConnection, since: datetime) -> int | None:
    h = health_samples.c
    query = sa.select(h.stored_id).where(h.ts >= since).order_by(h.ts).limit(1)
    found = (await conn.execute(query)).scalar()
    return None if found is None else int(found)


async def _ingest(conn: AsyncConnection, now: datetime, midnight: datetime) -> IngestToday:
    """Reports stored since a moment, from the numbers samples are stored under.

    ``stored_id`` grows by one per stored sample, so the newest number minus that of the
    first sample reported since the moment is how many arrived since (a report delivered
    late, after an outage, counts when it was stored). Two index probes, at any volume.
    """
    newest = (await conn.execute(sa.select(sa.func.max(health_samples.c.stored_id)))).scalar()
    if newest is None:
        return IngestToday(reports_today=0, per_minute_today=0.0, per_minute_last_hour=0.0)

    async def since(moment: datetime) -> int:
        first = await _first_sample_since(conn, moment)
        return 0 if first is None else max(0, int(newest) - first + 1)

    today = await since(midnight)
    last_hour = await since(now - timedelta(hours=1))
    minutes = max(1.0, (now - midnight).total_seconds() / 60)
    return IngestToday(
        reports_today=today,
        per_minute_today=round(today / minutes, 1),
        per_minute_last_hour=round(last_hour / min(60.0, minutes), 1),
    )


async def _dead_letters_today(conn: AsyncConnection, midnight: datetime) -> int:
    query = sa.select(sa.func.count()).where(dead_letters.c.last_seen >= midnight)
    return int((await conn.execute(query)).scalar_one())


async def _rollouts(conn: AsyncConnection) -> OpenRollouts:
    r = rollouts.c
    query = (
        sa.select(r.state, sa.func.count())
        .where(r.state.in_(OPEN_ROLLOUT_STATES))
        .group_by(r.state)
    )
    found = {state: int(count) for state, count in await conn.execute(query)}
    return OpenRollouts(
        running=found.get("running", 0),
        paused=found.get("paused", 0),
        awaiting_approval=found.get("awaiting_approval", 0),
    )


async def fleet_overview(conn: AsyncConnection, now: datetime) -> FleetOverview:
    """Every overview figure as of ``now``, read on one connection."""
    midnight = _midnight(now)
    online, offline, by_model, by_firmware = await _terminal_groups(conn)
    faulty, open_incidents, fleet = await _unresolved(conn)
    due_today, overdue = await count_follow_ups_due(conn, midnight.date())
    return FleetOverview(
        generated_at=now,
        terminals=online + offline,
        online=online,
        offline=offline,
        faulty=faulty,
        by_model=by_model,
        by_firmware=by_firmware,
        open_incidents=open_incidents,
        fleet_incidents=fleet,
        incidents_per_day=await _per_day(conn, midnight),
        ingest=await _ingest(conn, now, midnight),
        dead_letters_today=await _dead_letters_today(conn, midnight),
        cases=CasesDue(due_today=due_today, overdue=overdue),
        rollouts=await _rollouts(conn),
    )
