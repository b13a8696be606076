"""Incidents in a real store (SQLite file and PostgreSQL): uniqueness under concurrency,
lifecycle, flapping, and fleet correlation of many terminals sharing one cause."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from functools import partial

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Channel,
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Inventory,
    Message,
    Network,
    NetworkType,
    Severity,
    Topic,
)
from posfleet.diagnostics.errors import IncidentTransitionError
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.incident_actions import change_incident
from posfleet.diagnostics.incident_lifecycle import acknowledge, assign, resolve_by_staff
from posfleet.diagnostics.incident_recorder import (
    IncidentRecorder,
    open_or_reopen,
    resolve_cleared,
)
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store import apply_inventory
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    IncidentState,
    OpenOutcome,
    add_note,
    list_incidents,
    list_notes,
    open_incident,
)

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def db(engine: AsyncEngine) -> AsyncEngine:
    """This module's name for the both-backends engine of the conftest."""
    return engine


def _spec(terminal_id: str, rule_id: str = "printer.not_ready") -> IncidentSpec:
    return IncidentSpec(
        rule_id=rule_id,
        title="Printer cannot print",
        component="printer",
        severity="error",
        escalation="remote_fix",
        cause="paper",
        remedy=["reload the roll"],
        terminal_id=terminal_id,
    )


async def _terminal_incidents(db: AsyncEngine, terminal_id: str) -> list[IncidentRecord]:
    async with db.connect() as conn:
        return await list_incidents(conn, terminal_id=terminal_id)


def _tid(request: pytest.FixtureRequest, name: str) -> str:
    backend = "pg" if "postgresql" in request.node.name else "lite"
    return f"{name}-{backend}"


async def test_fifty_concurrent_openings_leave_exactly_one_open_incident(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    terminal_id = _tid(request, "DUP")

    async def open_once() -> OpenOutcome:
        async with db.begin() as conn:
            return (await open_incident(conn, _spec(terminal_id), now=T0))[1]

    outcomes = await asyncio.gather(*(open_once() for _ in range(50)))

    assert outcomes.count(OpenOutcome.OPENED) == 1
    [incident] = await _terminal_incidents(db, terminal_id)
    assert incident.state is IncidentState.OPEN
    assert incident.occurrences == 50


async def test_fifty_concurrent_duplicate_fault_messages_make_one_incident(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    terminal_id = _tid(request, "DUPMSG")
    diagnostics = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    # Two engines, as two central instances sharing the subscription would have: the
    # store is what must hold the line, not one engine's memory.
    other = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics, other:

        async def deliver(seq: int) -> None:
            event = FaultEvent(
                seq=seq,
                ts=T0,
                code="pin_pad.stuck_key",
                component=Component.PIN_PAD,
                severity=Severity.ERROR,
                detail="key 5 stuck",
            )
            target = diagnostics if seq % 2 else other
            await target.judge([Message(Topic(terminal_id, Channel.EVENT), event)])

        await asyncio.gather(*(deliver(seq) for seq in range(1, 51)))

    [incident] = await _terminal_incidents(db, terminal_id)
    assert incident.rule_id == "reported.pin_pad.stuck_key"
    assert incident.state is IncidentState.OPEN
    assert incident.cause == "key 5 stuck"


async def test_lifecycle_ack_assign_note_resolve_and_flap_reopens(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    terminal_id = _tid(request, "LIFE")
    window = timedelta(minutes=15)
    async with db.begin() as conn:
        incident_id, outcome = await open_or_reopen(
            conn, _spec(terminal_id), now=T0, flap_window=window
        )
        assert outcome is OpenOutcome.OPENED
        assert await change_incident(conn, incident_id, partial(acknowledge, by="alice", now=T0))
        with pytest.raises(IncidentTransitionError):
            await change_incident(conn, incident_id, partial(acknowledge, by="bob", now=T0))
        assert await change_incident(conn, incident_id, partial(assign, assignee="bob", now=T0))
        await add_note(conn, incident_id, author="alice", text="called the merchant", now=T0)
        key = _spec(terminal_id).open_key
        cleared = await resolve_cleared(conn, key, now=T0 + timedelta(minutes=1))
        assert cleared is not None and cleared.incident_id == incident_id
        # The condition comes back five minutes later: flapping, the same incident.
        again, outcome = await open_or_reopen(
            conn, _spec(terminal_id), now=T0 + timedelta(minutes=6), flap_window=window
        )
        assert (again, outcome) == (incident_id, OpenOutcome.REOPENED)
        by_bob = partial(resolve_by_staff, by="bob", resolution="", now=T0 + timedelta(minutes=7))
        assert await change_incident(conn, incident_id, by_bob)
        # An hour later it is a new problem: a new incident.
        later, outcome = await open_or_reopen(
            conn, _spec(terminal_id), now=T0 + timedelta(hours=1), flap_window=window
        )
        assert outcome is OpenOutcome.OPENED and later != incident_id
        notes = await list_notes(conn, incident_id)

    first, second = sorted(await _terminal_incidents(db, terminal_id), key=lambda i: i.id)
    assert first.state is IncidentState.RESOLVED and first.resolved_by == "bob"
    assert first.reopen_count == 1 and first.assignee == "bob"
    assert second.state is IncidentState.OPEN
    assert [n.text for n in notes] == ["called the merchant"]


class _Collected:
    def __init__(self) -> None:
        self.sent: list[tuple[NotificationEvent, IncidentRecord]] = []

    def notify(self, event: NotificationEvent, incident: IncidentRecord) -> None:
        self.sent.append((event, incident))


async def _report_host(
    diagnostics: Diagnostics, terminal_id: str, seq: int, *, reachable: bool
) -> None:
    metrics = HealthMetrics(network=Network(type=NetworkType.ETHERNET, host_reachable=reachable))
    report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics)
    await diagnostics.judge([Message(Topic(terminal_id, Channel.HEALTH), report)])


async def _register(
    db: AsyncEngine, terminal_id: str, site: str, merchant: str, firmware: str = "2.4.1"
) -> None:
    inventory = Inventory(
        model="PF-C200",
        serial=terminal_id,
        firmware_version=firmware,
        agent_version="1.0.0",
        site_id=site,
        merchant_id=merchant,
        ts=T0,
    )
    async with db.begin() as conn:
        await apply_inventory(conn, terminal_id, inventory, now=T0)


async def test_thirty_terminals_of_one_site_losing_the_host_are_one_fleet_incident(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    prefix = _tid(request, "SITE30")
    ids = [f"{prefix}-{n:02d}" for n in range(30)]
    for terminal_id in ids:
        await _register(db, terminal_id, site=f"{prefix}-shop", merchant=f"{prefix}-m")
    collected = _Collected()
    diagnostics = Diagnostics(
        db, DiagnosticsSettings(tick_interval_s=3600), notifier=collected, clock=lambda: T0
    )
    async with diagnostics:
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 1, reachable=True)
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 2, reachable=False)

        async with db.connect() as conn:
            fleet = await list_incidents(conn, kind=IncidentKind.FLEET, states=[IncidentState.OPEN])
            [parent] = [f for f in fleet if f.site_id == f"{prefix}-shop"]
            children = await list_incidents(conn, parent_id=parent.id)
            top = await list_incidents(conn, top_level=True, states=[IncidentState.OPEN])
        assert len(children) == 30
        assert {c.terminal_id for c in children} == set(ids)
        assert parent.rule_id == "network.host_unreachable"
        assert "30 terminals at site" in parent.title
        assert "site's local network" in parent.cause
        assert not [i for i in top if i.terminal_id in ids], "staff see one item, not thirty"
        escalations = [i for e, i in collected.sent if e is NotificationEvent.ESCALATED]
        assert [i.id for i in escalations] == [parent.id]

        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 3, reachable=True)

    async with db.connect() as conn:
        children = await list_incidents(conn, parent_id=parent.id)
        fleet = await list_incidents(conn, kind=IncidentKind.FLEET)
    assert {c.state for c in children} == {IncidentState.RESOLVED}
    assert next(f for f in fleet if f.id == parent.id).state is IncidentState.RESOLVED
    resolved = [i.id for e, i in collected.sent if e is NotificationEvent.RESOLVED]
    assert parent.id in resolved


async def test_a_site_whose_faults_came_ahead_of_its_health_is_escalated_as_one_incident(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    # After a centre restart the fast lane brings each till's "host unreachable" before
    # its first health report: reported faults at once, which the rule takes over when
    # the reports come, and then correlates into one fleet incident that is escalated.
    prefix = _tid(request, "EARLYSITE")
    ids = [f"{prefix}-{n}" for n in range(5)]
    for terminal_id in ids:
        await _register(db, terminal_id, site=f"{prefix}-shop", merchant=f"{prefix}-m")
    collected = _Collected()
    diagnostics = Diagnostics(
        db, DiagnosticsSettings(tick_interval_s=3600), notifier=collected, clock=lambda: T0
    )
    async with diagnostics:
        for terminal_id in ids:
            event = FaultEvent(
                seq=2,
                ts=T0,
                code="network.host_unreachable",
                component=Component.NETWORK,
                severity=Severity.ERROR,
            )
            await diagnostics.judge([Message(Topic(terminal_id, Channel.EVENT), event)])
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 3, reachable=False)

        async with db.connect() as conn:
            fleet = await list_incidents(conn, kind=IncidentKind.FLEET, states=[IncidentState.OPEN])
            [parent] = [f for f in fleet if f.site_id == f"{prefix}-shop"]
            children = await list_incidents(conn, parent_id=parent.id)
    assert {c.terminal_id for c in children} == set(ids)
    assert {c.rule_id for c in children} == {"network.host_unreachable"}
    assert diagnostics.recorder.stats.taken_over == len(ids)
    escalations = [i for e, i in collected.sent if e is NotificationEvent.ESCALATED]
    assert [i.id for i in escalations] == [parent.id]


async def test_the_same_fault_at_many_sites_is_the_acquirer(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    prefix = _tid(request, "ACQ")
    ids = [f"{prefix}-{n}" for n in range(4)]
    for n, terminal_id in enumerate(ids):
        await _register(db, terminal_id, site=f"{prefix}-site{n}", merchant=f"{prefix}-m{n}")
    diagnostics = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics:
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 1, reachable=False)
    async with db.connect() as conn:
        fleet = await list_incidents(conn, kind=IncidentKind.FLEET, states=[IncidentState.OPEN])
        [parent] = [f for f in fleet if f.correlation == "acquirer/network.host_unreachable"]
        children = await list_incidents(conn, parent_id=parent.id)
    assert {c.terminal_id for c in children} >= set(ids)
    assert "acquirer" in parent.cause
    # Nothing for the merchants to do: support calls the acquirer and tells them to wait.
    steps = " ".join(parent.remedy)
    assert parent.remedy[0].startswith("Nothing for the merchants to fix")
    assert "contacts the acquirer" in steps and "to wait" in steps
    assert "offline (fallback) payments" in steps
    assert "Restart the router" not in steps, "not the rule's steps for one terminal"
    assert parent.escalation == "remote_fix"
    assert (parent.site_id, parent.merchant_id) == (None, None), "four sites, four merchants"


async def _fleet_of(db: AsyncEngine, terminal_id: str) -> IncidentRecord:
    async with db.connect() as conn:
        [mine] = await list_incidents(conn, terminal_id=terminal_id)
        assert mine.parent_id is not None, f"{terminal_id} is in no fleet incident"
        [parent] = await list_incidents(conn, kind=IncidentKind.FLEET)
    assert parent.id == mine.parent_id
    return parent


async def test_a_sites_fleet_incident_names_the_merchant_all_share_and_sends_them_to_the_router(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    prefix = _tid(request, "SHOP")
    ids = [f"{prefix}-{n}" for n in range(3)]
    for terminal_id in ids:
        await _register(db, terminal_id, site=f"{prefix}-site", merchant=f"{prefix}-m")
    diagnostics = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics:
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 1, reachable=False)
        parent = await _fleet_of(db, ids[0])
        assert parent.correlation == f"site:{prefix}-site/network.host_unreachable"
        assert (parent.site_id, parent.merchant_id) == (f"{prefix}-site", f"{prefix}-m")
        steps = " ".join(parent.remedy)
        assert "check the router or modem on site" in steps
        assert f"at site {prefix}-site" in steps
        assert parent.escalation == "remote_fix", "the rule's own next step"

        # A terminal of another merchant at the same site joins: the site is still
        # shared, the merchant no longer.
        other = f"{prefix}-x"
        await _register(db, other, site=f"{prefix}-site", merchant=f"{prefix}-other")
        await _report_host(diagnostics, other, 1, reachable=False)
        parent = await _fleet_of(db, other)
        assert "4 terminals at site" in parent.title
        assert (parent.site_id, parent.merchant_id) == (f"{prefix}-site", None)


async def test_an_acquirer_outage_at_one_chains_shops_names_the_chain(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    prefix = _tid(request, "CHAIN")
    ids = [f"{prefix}-{n}" for n in range(3)]
    for n, terminal_id in enumerate(ids):
        await _register(db, terminal_id, site=f"{prefix}-shop{n}", merchant=f"{prefix}-chain")
    diagnostics = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics:
        for terminal_id in ids:
            await _report_host(diagnostics, terminal_id, 1, reachable=False)
    parent = await _fleet_of(db, ids[0])
    assert parent.correlation == "acquirer/network.host_unreachable"
    assert (parent.site_id, parent.merchant_id) == (None, f"{prefix}-chain")


async def test_a_firmware_regression_goes_to_ops_to_hold_the_rollout(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    prefix = _tid(request, "FW")
    ids = [f"{prefix}-{n}" for n in range(3)]
    for n, terminal_id in enumerate(ids):
        await _register(db, terminal_id, f"{prefix}-s{n}", f"{prefix}-m{n}", firmware="3.0.0")
    [rule] = [r for r in load_builtin_rules() if r.id == "system.reboot_loop"]
    recorder = IncidentRecorder(db, recently_updated=lambda _terminal_id: True)
    await recorder.apply(
        [Finding(FindingKind.OPENED, terminal_id, rule, T0, {"reboots": 3}) for terminal_id in ids]
    )
    parent = await _fleet_of(db, ids[0])
    assert parent.correlation == "firmware:3.0.0/system.reboot_loop"
    assert parent.firmware_version == "3.0.0"
    steps = " ".join(parent.remedy)
    assert "escalates to ops" in steps and "hold (pause) every rollout of firmware 3.0.0" in steps
    assert "Power-cycle" not in steps and "swap the terminal" not in steps
    # The rule's next step is a technician; for a firmware fault it is support's.
    assert (rule.escalation.value, parent.escalation) == ("on_site", "remote_fix")


async def test_a_fault_ahead_of_the_health_it_followed_is_one_incident_its_rule_takes_over(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    # The fast lane hands over the fault event (seq 2) before the health report the
    # terminal sent first (seq 1): a reported fault opens at once, staff take it, and
    # when the report comes the rule takes that same incident over; the older "reachable"
    # does not clear it, the next report does.
    terminal_id = _tid(request, "EARLY")
    diagnostics = Diagnostics(db, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics:
        event = FaultEvent(
            seq=2,
            ts=T0,
            code="network.host_unreachable",
            component=Component.NETWORK,
            severity=Severity.ERROR,
            detail="no answer from the acquirer",
        )
        await diagnostics.judge([Message(Topic(terminal_id, Channel.EVENT), event)])
        [reported] = await _terminal_incidents(db, terminal_id)
        assert reported.rule_id == "reported.network.host_unreachable"
        async with db.begin() as conn:
            assert await change_incident(
                conn, reported.id, partial(acknowledge, by="alice", now=T0)
            )

        await _report_host(diagnostics, terminal_id, 1, reachable=True)
        [incident] = await _terminal_incidents(db, terminal_id)
        assert incident.id == reported.id and incident.state is IncidentState.ACKNOWLEDGED
        assert incident.rule_id == "network.host_unreachable"
        assert incident.title == "Acquirer host unreachable"
        assert incident.facts["detail"] == "no answer from the acquirer"
        assert incident.facts["reported_as"] == "reported.network.host_unreachable"
        assert diagnostics.recorder.stats.taken_over == 1

        await _report_host(diagnostics, terminal_id, 3, reachable=True)
        [done] = await _terminal_incidents(db, terminal_id)
        assert done.id == reported.id and done.state is IncidentState.RESOLVED
