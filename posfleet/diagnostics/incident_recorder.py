"""Turning the engine's findings into incidents: open, reopen, resolve, group, notify.

What each finding does to an incident is :mod:`posfleet.diagnostics.incident_lifecycle`'s
decision; this module reads what the decision needs, writes it with the store's plain
queries, and sends the notifications it names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.fleet_correlation import (
    CorrelationPolicy,
    FleetGroup,
    Peer,
    choose_group,
)
from posfleet.diagnostics.incident_lifecycle import (
    Refusal,
    Repeat,
    Transition,
    condition_cleared,
    condition_holds,
    group_merged,
    group_recovered,
    opening_notice,
    take_over,
)
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.engine import write_transaction
from posfleet.store.incident_groups import (
    count_unresolved_children,
    list_group_candidates,
    other_parents,
    shared_identity,
)
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    OpenOutcome,
    count_occurrence,
    get_incident,
    get_open_incident,
    latest_resolved,
    open_incident,
    set_parent,
    terminal_identity,
    terminal_open_key,
    update_incident,
)

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
            identity = await terminal_identity(conn, finding.terminal_id)
        async with write_transaction(self._engine) as conn:
            spec = _spec(finding, identity)
            incident_id, outcome = await open_or_reopen(
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
        if record is not None:
            self._notify(opening_notice(record, outcome), record)
        if group is not None:
            self._notify(opening_notice(*group), group[0])

    async def _taken_over(self, finding: Finding) -> None:
        """The reported fault's incident becomes the rule's; without one, as if opened."""
        replaced = finding.replaces
        assert replaced is not None, "a take-over names the reported fault it replaces"
        async with self._engine.connect() as conn:
            identity = await terminal_identity(conn, finding.terminal_id)
        async with write_transaction(self._engine) as conn:
            spec = _spec(finding, identity)
            from_key = terminal_open_key(finding.terminal_id, replaced.id)
            incident_id = await _take_over(conn, from_key, spec, now=finding.at)
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
        if group is not None:
            # The rule's knowledge makes it a fleet-wide fault: escalate as _opened does.
            self._notify(opening_notice(*group), group[0])

    async def _correlate(
        self, conn: AsyncConnection, rule: Rule, incident_id: int, finding: Finding
    ) -> tuple[IncidentRecord, OpenOutcome] | None:
        candidates = await list_group_candidates(
            conn, rule.id, seen_since=finding.at - self.settings.correlation_window
        )
        peers = [
            Peer(c.incident_id, c.terminal_id, c.site_id, c.merchant_id, c.firmware_version)
            for c in candidates
        ]
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
    ) -> tuple[IncidentRecord, OpenOutcome]:
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
        parent_id, outcome = await open_or_reopen(
            conn, spec, now=now, flap_window=self.settings.flap_window
        )
        member_ids = [m.incident_id for m in group.members]
        previous_parents = await other_parents(conn, member_ids, parent_id)
        await set_parent(conn, member_ids, parent_id, now=now)
        children = await count_unresolved_children(conn, parent_id)
        # Written on every join, not only at opening: the group grows, and a fleet
        # incident reopened or opened by an older version gets the current texts.
        texts = {
            "title": group.describe(rule.title, children),
            "facts": {**spec.facts, "children": children},
            "cause": spec.cause,
            "remedy": list(spec.remedy),
            "escalation": spec.escalation,
        }
        await update_incident(conn, parent_id, {**texts, **await shared_identity(conn, parent_id)})
        # A group that grew into a wider one (a site's outage turning out to be the
        # acquirer's) leaves the narrower fleet incident empty: it is closed into this one.
        for old_parent in sorted(previous_parents):
            await self._merge(conn, old_parent, parent_id, now)
        if outcome is OpenOutcome.OPENED:
            self.stats.fleet_opened += 1
        record = await get_incident(conn, parent_id)
        assert record is not None
        return record, outcome

    async def _merge(
        self, conn: AsyncConnection, old_parent: int, into: int, now: datetime
    ) -> None:
        record = await get_incident(conn, old_parent)
        if record is None:
            return
        remaining = await count_unresolved_children(conn, old_parent)
        decision = group_merged(record, unresolved_children=remaining, into=into, now=now)
        if isinstance(decision, Transition):
            await write_transition(conn, decision)
        elif remaining:
            await update_incident(conn, old_parent, await shared_identity(conn, old_parent))

    async def _cleared(self, finding: Finding) -> None:
        key = terminal_open_key(finding.terminal_id, finding.rule.id)
        parent: tuple[IncidentRecord, Transition] | None = None
        async with write_transaction(self._engine) as conn:
            resolved = await resolve_cleared(conn, key, now=finding.at)
            if resolved is None:
                return
            record = await get_incident(conn, resolved.incident_id)
            if record is not None and record.parent_id is not None:
                parent = await _close_group(conn, record.parent_id, now=finding.at)
        self.stats.resolved += 1
        if record is not None:
            self._notify(resolved.notify, record)
        if parent is not None:
            self._notify(parent[1].notify, parent[0])

    def _notify(self, event: NotificationEvent | None, record: IncidentRecord) -> None:
        if event is not None and self._notifier is not None:
            self._notifier.notify(event, record)


# -- the lifecycle's decisions, carried out in the caller's transaction ---------------------


async def write_transition(conn: AsyncConnection, transition: Transition) -> bool:
    """Write a lifecycle step; False if the incident left the states it was decided for."""
    return await update_incident(
        conn,
        transition.incident_id,
        transition.changes,
        expected_states=transition.allowed_from,
        increments=transition.increments,
    )


async def open_or_reopen(
    conn: AsyncConnection, spec: IncidentSpec, *, now: datetime, flap_window: timedelta
) -> tuple[int, OpenOutcome]:
    """``spec``'s condition holds: count one more occurrence of its unresolved incident,
    reopen the one that resolved within ``flap_window``, or open a new one.

    Safe under any concurrency: racing callers all end up on the same row, and exactly
    one of them gets ``OPENED`` (or ``REOPENED``). It reads before it writes, so on SQLite
    concurrent callers need :func:`~posfleet.store.engine.write_transaction`.
    """
    # A second look only when the incident read as unresolved was resolved before the write.
    for _look in range(2):
        holder = await get_open_incident(conn, spec.open_key)
        previous = None if holder is not None else await latest_resolved(conn, spec)
        decision = condition_holds(
            spec, holder=holder, previous=previous, now=now, flap_window=flap_window
        )
        if isinstance(decision, Repeat):
            counted = await count_occurrence(conn, spec.open_key, now=now)
            if counted is not None:
                return counted, OpenOutcome.ALREADY_OPEN
            continue
        if isinstance(decision, Transition) and await write_transition(conn, decision):
            return decision.incident_id, OpenOutcome.REOPENED
        break
    # A new incident; or, when another writer opened (or reopened) one for the key since
    # the read, one more occurrence of that one.
    return await open_incident(conn, spec, now=now)


async def resolve_cleared(
    conn: AsyncConnection, open_key: str, *, now: datetime
) -> Transition | None:
    """The condition of the incident holding ``open_key`` cleared: resolve it. Returns the
    step written, or None when no unresolved incident holds the key."""
    holder = await get_open_incident(conn, open_key)
    if holder is None:
        return None
    decision = condition_cleared(holder, now=now)
    if isinstance(decision, Refusal) or not await write_transition(conn, decision):
        return None
    return decision


async def _close_group(
    conn: AsyncConnection, parent_id: int, *, now: datetime
) -> tuple[IncidentRecord, Transition] | None:
    """Resolve the fleet incident ``parent_id`` if its last terminal recovered."""
    parent = await get_incident(conn, parent_id)
    if parent is None:
        return None
    remaining = await count_unresolved_children(conn, parent_id)
    decision = group_recovered(parent, unresolved_children=remaining, now=now)
    if isinstance(decision, Refusal) or not await write_transition(conn, decision):
        return None
    resolved = await get_incident(conn, parent_id)
    return None if resolved is None else (resolved, decision)


async def _take_over(
    conn: AsyncConnection, from_key: str, spec: IncidentSpec, *, now: datetime
) -> int | None:
    """Give the incident holding ``from_key`` to ``spec``'s rule; its id, or None when the
    lifecycle refuses (no such incident, or the rule's key is taken)."""
    reported = await get_open_incident(conn, from_key)
    holder = await get_open_incident(conn, spec.open_key)
    decision = take_over(reported, spec, holder=holder, now=now)
    if isinstance(decision, Refusal) or not await write_transition(conn, decision):
        return None
    return decision.incident_id


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


def _jsonable(value: Any) -> Any:
    """Facts as JSON can store them (CEL hands back plain types already; be sure)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
