"""Turning the engine's findings into incidents: open, reopen, resolve, group, notify."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.fleet_correlation import (
    CorrelationPolicy,
    FleetGroup,
    Peer,
    choose_group,
)
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.engine import write_transaction
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    IncidentState,
    OpenOutcome,
    count_unresolved_children,
    get_incident,
    open_incident,
    resolve_open_incident,
    retarget_open_incident,
    set_parent,
    terminal_open_key,
)
from posfleet.store.schema import incidents, terminals

log = logging.getLogger(__name__)


class Notifier(Protocol):
    """Anything that takes notifications (the webhook notifier, a list in tests)."""

    def notify(self, event: NotificationEvent, incident: IncidentRecord) -> None:
        """Queue one notification."""
        ...


@dataclass(frozen=True)
class RecorderSettings:
    """Lifecycle tuning."""

    flap_window: timedelta = timedelta(minutes=15)
    """A condition that comes back within this long reopens the same incident."""
    correlation_window: timedelta = timedelta(hours=1)
    """Only incidents opened this recently are grouped together."""
    correlation: CorrelationPolicy = field(default_factory=CorrelationPolicy)


@dataclass(slots=True)
class RecorderStats:
    """What the recorder did."""

    opened: int = 0
    reopened: int = 0
    repeated: int = 0
    resolved: int = 0
    fleet_opened: int = 0
    taken_over: int = 0
    """Reported faults whose incidents a rule took over (the fault came before its inputs)."""


class IncidentRecorder:
    """Applies findings to the store, one transaction per finding."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        settings: RecorderSettings = RecorderSettings(),
        notifier: Notifier | None = None,
        recently_updated: Callable[[str], bool] = lambda _terminal_id: False,
    ) -> None:
        self.settings = settings
        self.stats = RecorderStats()
        self._engine = engine
        self._notifier = notifier
        self._recently_updated = recently_updated

    async def apply(self, findings: Sequence[Finding]) -> None:
        """Record every finding; each in its own transaction so one failure stays local."""
        for finding in findings:
            if finding.kind is FindingKind.OPENED:
                await self._opened(finding)
            elif finding.kind is FindingKind.TAKEN_OVER:
                await self._taken_over(finding)
            else:
                await self._cleared(finding)

    async def _opened(self, finding: Finding) -> None:
        rule = finding.rule
        # Read before the write transaction: on SQLite a transaction that reads first
        # cannot wait for the write lock (it fails as "locked"); one that writes first can.
        async with self._engine.connect() as conn:
            identity = await _identity(conn, finding.terminal_id)
        async with write_transaction(self._engine) as conn:
            spec = _spec(finding, identity)
            incident_id, outcome = await open_incident(
                conn, spec, now=finding.at, flap_window=self.settings.flap_window
            )
            group = None
            if outcome is not OpenOutcome.ALREADY_OPEN and rule.correlate:
                group = await self._correlate(conn, rule, incident_id, finding)
            record = await get_incident(conn, incident_id)
        if outcome is OpenOutcome.ALREADY_OPEN:
            self.stats.repeated += 1
            return
        if outcome is OpenOutcome.REOPENED:
            self.stats.reopened += 1
        else:
            self.stats.opened += 1
        if record is not None and record.parent_id is None:
            self._notify(NotificationEvent.OPENED, record)
        if group is not None:
            fleet_record, fleet_new = group
            if fleet_new:
                self._notify(NotificationEvent.ESCALATED, fleet_record)

    async def _taken_over(self, finding: Finding) -> None:
        """The reported fault's incident becomes the rule's; without one, as if opened."""
        replaced = finding.replaces
        assert replaced is not None, "a take-over names the reported fault it replaces"
        async with self._engine.connect() as conn:
            identity = await _identity(conn, finding.terminal_id)
        async with write_transaction(self._engine) as conn:
            spec = _spec(finding, identity)
            from_key = terminal_open_key(finding.terminal_id, replaced.id)
            incident_id = await retarget_open_incident(conn, from_key, spec, now=finding.at)
            group = None
            if incident_id is not None and finding.rule.correlate:
                group = await self._correlate(conn, finding.rule, incident_id, finding)
        if incident_id is None:
            await self._opened(finding)
            await self._cleared(
                Finding(FindingKind.CLEARED, finding.terminal_id, replaced, finding.at)
            )
            return
        self.stats.taken_over += 1
        if group is not None and group[1]:
            # The rule's knowledge makes it a fleet-wide fault: escalate as _opened does.
            self._notify(NotificationEvent.ESCALATED, group[0])

    async def _correlate(
        self, conn: AsyncConnection, rule: Rule, incident_id: int, finding: Finding
    ) -> tuple[IncidentRecord, bool] | None:
        peers = await _open_peers(
            conn, rule.id, since=finding.at - self.settings.correlation_window
        )
        me = next((p for p in peers if p.incident_id == incident_id), None)
        if me is None:
            return None
        group = choose_group(
            rule.id,
            me,
            peers,
            rule.correlate,
            policy=self.settings.correlation,
            recently_updated=self._recently_updated,
        )
        if group is None:
            return None
        return await self._attach(conn, rule, group, finding.at)

    async def _attach(
        self, conn: AsyncConnection, rule: Rule, group: FleetGroup, now: datetime
    ) -> tuple[IncidentRecord, bool]:
        spec = IncidentSpec(
            rule_id=rule.id,
            kind=IncidentKind.FLEET,
            correlation=group.key,
            title=group.describe(rule.title, len(group.members)),
            component=rule.component.value,
            severity=rule.severity.value,
            escalation=group.escalation(rule.escalation).value,
            cause=group.cause(),
            remedy=group.remedy(),
            facts={"correlated_by": group.by.value, "value": group.value},
            site_id=group.value if group.by.value == "site" else None,
            merchant_id=group.value if group.by.value == "merchant" else None,
            firmware_version=group.value if group.by.value == "firmware" else None,
        )
        parent_id, outcome = await open_incident(
            conn, spec, now=now, flap_window=self.settings.flap_window
        )
        member_ids = [m.incident_id for m in group.members]
        previous_parents = set(
            (
                await conn.execute(
                    sa.select(incidents.c.parent_id).where(
                        incidents.c.id.in_(member_ids),
                        incidents.c.parent_id.is_not(None),
                        incidents.c.parent_id != parent_id,
                    )
                )
            ).scalars()
        )
        await set_parent(conn, member_ids, parent_id, now=now)
        children = await count_unresolved_children(conn, parent_id)
        # Written on every join, not only at opening: the group grows, and a fleet
        # incident reopened or opened by an older version gets the current texts.
        await conn.execute(
            sa.update(incidents)
            .where(incidents.c.id == parent_id)
            .values(
                title=group.describe(rule.title, children),
                facts={**spec.facts, "children": children},
                cause=spec.cause,
                remedy=list(spec.remedy),
                escalation=spec.escalation,
                **await _shared_identity(conn, parent_id),
            )
        )
        # A group that grew into a wider one (a site's outage turning out to be the
        # acquirer's) leaves the narrower fleet incident empty: it is closed into this one.
        for old_parent in previous_parents:
            if await count_unresolved_children(conn, old_parent) == 0:
                await _resolve_by_id(conn, old_parent, now, f"merged into incident #{parent_id}")
            else:
                await conn.execute(
                    sa.update(incidents)
                    .where(incidents.c.id == old_parent)
                    .values(**await _shared_identity(conn, old_parent))
                )
        if outcome is OpenOutcome.OPENED:
            self.stats.fleet_opened += 1
        record = await get_incident(conn, parent_id)
        assert record is not None
        return record, outcome is not OpenOutcome.ALREADY_OPEN

    async def _cleared(self, finding: Finding) -> None:
        key = terminal_open_key(finding.terminal_id, finding.rule.id)
        resolved_parent: IncidentRecord | None = None
        async with write_transaction(self._engine) as conn:
            incident_id = await resolve_open_incident(
                conn, key, now=finding.at, resolution="condition cleared"
            )
            if incident_id is None:
                return
            record = await get_incident(conn, incident_id)
            parent_id = record.parent_id if record is not None else None
            if parent_id is not None and await count_unresolved_children(conn, parent_id) == 0:
                await _resolve_by_id(conn, parent_id, finding.at, "every terminal recovered")
                resolved_parent = await get_incident(conn, parent_id)
        self.stats.resolved += 1
        if record is not None and record.parent_id is None:
            self._notify(NotificationEvent.RESOLVED, record)
        if resolved_parent is not None:
            self._notify(NotificationEvent.RESOLVED, resolved_parent)

    def _notify(self, event: NotificationEvent, record: IncidentRecord) -> None:
        if self._notifier is not None:
            self._notifier.notify(event, record)


def _spec(finding: Finding, identity: dict[str, Any]) -> IncidentSpec:
    rule = finding.rule
    return IncidentSpec(
        rule_id=rule.id,
        title=rule.title,
        component=rule.component.value,
        severity=rule.severity.value,
        escalation=rule.escalation.value,
        cause=rule.cause,
        remedy=rule.remedy,
        terminal_id=finding.terminal_id,
        facts=_jsonable(finding.facts),
        **identity,
    )


async def _resolve_by_id(conn: AsyncConnection, incident_id: int, now: datetime, why: str) -> None:
    await conn.execute(
        sa.update(incidents)
        .where(incidents.c.id == incident_id, incidents.c.state != IncidentState.RESOLVED.value)
        .values(
            state=IncidentState.RESOLVED.value,
            open_key=None,
            resolved_at=now,
            resolution=why,
            updated_at=now,
        )
    )


async def _shared_identity(conn: AsyncConnection, parent_id: int) -> dict[str, str | None]:
    """The site and merchant every child of ``parent_id`` shares; None where they differ.

    Resolved children count too: the fleet incident is about every terminal it grouped,
    as its page shows them.
    """
    i = incidents.c
    shared: dict[str, str | None] = {}
    for column in (i.site_id, i.merchant_id):
        row = (
            await conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count(column),
                    sa.func.count(sa.distinct(column)),
                    sa.func.min(column),
                ).where(i.parent_id == parent_id)
            )
        ).one()
        children, known, distinct, value = row
        one = children > 0 and known == children and distinct == 1
        shared[column.name] = str(value) if one else None
    return shared


async def _identity(conn: AsyncConnection, terminal_id: str) -> dict[str, Any]:
    t = terminals.c
    row = (
        await conn.execute(
            sa.select(t.model, t.firmware_version, t.site_id, t.merchant_id).where(
                t.terminal_id == terminal_id
            )
        )
    ).first()
    if row is None:
        return {}
    return {k: (v or None) for k, v in row._mapping.items()}


async def _open_peers(conn: AsyncConnection, rule_id: str, *, since: datetime) -> list[Peer]:
    i = incidents.c
    rows = (
        await conn.execute(
            sa.select(i.id, i.terminal_id, i.site_id, i.merchant_id, i.firmware_version).where(
                i.rule_id == rule_id,
                i.kind == IncidentKind.TERMINAL.value,
                i.state != IncidentState.RESOLVED.value,
                i.last_seen_at >= since,
            )
        )
    ).all()
    return [
        Peer(int(r.id), str(r.terminal_id), r.site_id, r.merchant_id, r.firmware_version)
        for r in rows
    ]


def _jsonable(value: Any) -> Any:
    """Facts as JSON can store them (CEL hands back plain types already; be sure)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
