"""Incidents in a real store (SQLite file and PostgreSQL): uniqueness under concurrency,
lifecycle, flapping, and fleet correlation of many terminals sharing one cause."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

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
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store import apply_inventory
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    IncidentState,
    OpenOutcome,
    acknowledge_incident,
    add_note,
    assign_incident,
    list_incidents,
    list_notes,
    open_incident,
    resolve_incident,
    resolve_open_incident,
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
            await target.on_stored([Message(Topic(terminal_id, Channel.EVENT), event)])

        await asyncio.gather(*(deliver(seq) for seq in range(1, 51)))

    [incident] = await _terminal_incidents(db, terminal_id)
    assert incident.rule_id == "reported.pin_pad.stuck_key"
    assert incident.state is IncidentState.OPEN
    assert incident.cause == "key 5 stuck"


async def test_lifecycle_ack_assign_note_resolve_and_flap_reopens(
    db: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    terminal_id = _tid(request, "LIFE")
    async with db.begin() as conn:
        incident_id, outcome = await open_incident(conn, _spec(terminal_id), now=T0)
        assert outcome is OpenOutcome.OPENED
        assert await acknowledge_incident(conn, incident_id, by="alice", now=T0)
        assert not await acknowledge_incident(conn, incident_id, by="bob", now=T0)
        assert await assign_incident(conn, incident_id, "bob", now=T0)
        await add_note(conn, incident_id, author="alice", text="called the merchant", now=T0)
        key = _spec(terminal_id).open_key
        assert await resolve_open_incident(conn, key, now=T0 + timedelta(minutes=1)) == incident_id
        # The condition comes back five minutes later: flapping, the same incident.
        again, outcome = await open_incident(
            conn, _spec(terminal_id), now=T0 + timedelta(minutes=6)
        )
        assert (again, outcome) == (incident_id, OpenOutcome.REOPENED)
        assert await resolve_incident(conn, incident_id, by="bob", now=T0 + timedelta(minutes=7))
        # An hour later it is a new problem: a new incident.
        later, outcome = await open_incident(conn, _spec(terminal_id), now=T0 + timedelta(hours=1))
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
    await diagnostics.on_stored([Message(Topic(terminal_id, Channel.HEALTH), report)])


async def _register(db: AsyncEngine, terminal_id: str, site: str, merchant: str) -> None:
    inventory = Inventory(
        model="PF-C200",
        serial=terminal_id,
        firmware_version="2.4.1",
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
