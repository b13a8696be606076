"""The demo's cases on a migrated SQLite store: one due today, one linked to its incident."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central import demo_cases
from posfleet.contract import utcnow
from posfleet.helpdesk import helpdesk_day
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.cases import CaseLinkKind, cases_linked_to, follow_ups_due, list_cases
from posfleet.store.incidents import IncidentSpec, open_incident


async def test_the_demo_opens_a_case_due_today_and_links_the_paper_out_incident(
    sqlite_engine: AsyncEngine,
) -> None:
    terminals = [
        FleetTerminal(terminal_id=f"DEMO-{n:03d}", password="x", merchant_id=f"M-{n}")
        for n in range(8)
    ]
    paper = demo_cases._paper_out_terminal(terminals)
    assert paper is not None
    demo_cases.start_demo_cases(sqlite_engine, terminals, actor="user:admin", speed=100.0)
    spec = IncidentSpec(
        rule_id="printer.no_paper", title="Out of paper", component="printer",
        severity="error", escalation="merchant", cause="no paper", remedy=["load paper"],
        terminal_id=paper.terminal_id,
    )  # fmt: skip
    async with sqlite_engine.begin() as conn:
        incident_id, _ = await open_incident(conn, spec, now=utcnow())
    await asyncio.gather(*demo_cases._TASKS)
    async with sqlite_engine.connect() as conn:
        cases = await list_cases(conn)
        due = await follow_ups_due(conn, helpdesk_day(utcnow()))
        linked = await cases_linked_to(conn, CaseLinkKind.INCIDENT, incident_id)
    assert len(cases) == 2
    assert [c.subject for c in due] == ["Chip cards fail at the till"]
    assert [c.terminal_ids for c in linked] == [[paper.terminal_id]]
