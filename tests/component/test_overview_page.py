"""The overview page, its live fragment and GET /api/v1/overview on a seeded fleet."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from posfleet.contract import Inventory, State, utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.overview_page import OVERVIEW_CACHE_KEY, overview_snapshot
from posfleet.diagnostics.incident_actions import change_incident
from posfleet.diagnostics.incident_lifecycle import acknowledge, resolve_by_staff
from posfleet.store import apply_inventory, apply_state
from posfleet.store.accounts import Role, create_api_token, create_user
from posfleet.store.cases import CaseCategory, CaseChannel, CaseDraft, insert_case
from posfleet.store.incidents import IncidentKind, IncidentSpec, open_incident

SECRET = bytes(range(32))
PASSWORD = "overview-at-a-glance-9"
Client = TestClient[web.Request, web.Application]

# (terminal, online, model, firmware)
FLEET = (
    ("T-0001", True, "V400m", "5.2.1"),
    ("T-0002", False, "V400m", "5.2.1"),
    ("T-0003", True, "A920", "6.0.0"),
    ("T-0004", True, "A920", "6.0.0"),
)


def _spec(terminal_id: str | None, rule: str, severity: str, **extra: Any) -> IncidentSpec:
    return IncidentSpec(
        rule_id=rule,
        title=f"{rule} on {terminal_id}",
        component="printer",
        severity=severity,
        escalation="remote",
        cause="test",
        remedy=["look"],
        terminal_id=terminal_id,
        **extra,
    )


async def _seed(engine: AsyncEngine) -> dict[str, int]:
    now = utcnow()
    ids: dict[str, int] = {}
    async with engine.begin() as conn:
        await create_user(conn, "vera", PASSWORD, Role.VIEWER)
        for tid, online, model, firmware in FLEET:
            await apply_state(
                conn, tid, State(online=online, agent_version="1", boot_id="b1", ts=now), now=now
            )
            inventory = Inventory(
                model=model,
                serial=f"SN-{tid}",
                firmware_version=firmware,
                agent_version="1",
                ts=now,
            )
            await apply_inventory(conn, tid, inventory, now=now)
        for name, tid, severity in (
            ("crit", "T-0001", "critical"),
            ("err", "T-0003", "error"),
            ("warn", "T-0003", "warning"),
            ("info", "T-0004", "info"),
            ("gone", "T-0002", "critical"),
        ):
            ids[name], _ = await open_incident(conn, _spec(tid, f"rule.{name}", severity), now=now)
        await change_incident(conn, ids["err"], partial(acknowledge, by="alice", now=now))
        resolved = partial(resolve_by_staff, by="alice", resolution="", now=now)
        await change_incident(conn, ids["gone"], resolved)
        fleet = _spec(None, "rule.fleet", "warning", kind=IncidentKind.FLEET, correlation="fw")
        await open_incident(conn, fleet, now=now)
        today = now.date()
        for follow_up in (today, today - timedelta(days=2), today + timedelta(days=1)):
            draft = CaseDraft(
                merchant_id="M-1",
                subject="Printer",
                complaint="No paper comes out",
                channel=CaseChannel.PHONE,
                category=CaseCategory.PRINTER,
                follow_up_on=follow_up,
            )
            await insert_case(conn, draft, opened_by="alice", now=now)
    return ids


@pytest.fixture
async def seeded(engine: AsyncEngine) -> dict[str, int]:
    return await _seed(engine)


@pytest.fixture
async def client(engine: AsyncEngine, seeded: dict[str, int]) -> AsyncIterator[Client]:
    app = create_app(engine, session_secret=SECRET)
    # Exact figures after each change: no snapshot kept between requests.
    app[OVERVIEW_CACHE_KEY] = overview_snapshot(app, fresh_for=0, stale_for=0)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _log_in(client: Client) -> None:
    page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert token
    form = {"csrf_token": token.group(1), "username": "vera", "password": PASSWORD}
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303
    # The landing page after login.
    assert response.headers["Location"] == "/overview"


def _figure(html: str, href: str) -> str:
    """The number the page shows as a link to ``href`` (the first such link)."""
    escaped = href.replace("&", "&amp;")
    found = re.search(rf'<a href="{re.escape(escaped)}"[^>]*>([^<]+)</a>', html)
    assert found, f"no figure links to {href}"
    return found.group(1)


def _tile(html: str, label: str) -> str:
    found = re.search(rf"<dt>{re.escape(label)}</dt><dd>(?:<[^>]+>)?([^<]+)", html)
    assert found, f"no figure labelled {label!r}"
    return found.group(1)


async def test_a_viewer_sees_the_fleets_counts_each_linked_to_its_list(client: Client) -> None:
    await _log_in(client)
    response = await client.get("/overview")
    assert response.status == 200
    html = await response.text()
    assert _figure(html, "/?online=true") == "3"
    assert _figure(html, "/?online=false") == "1"
    assert _figure(html, "/?faulty=true") == "3"
    assert _figure(html, "/cases?follow_up=due_today") == "1"
    assert _figure(html, "/cases?follow_up=overdue") == "1"
    assert _figure(html, "/?model=V400m") == "2"
    assert _figure(html, "/?model=A920&online=true") == "2"
    assert _figure(html, "/?firmware=6.0.0") == "2"
    for label, count in (("critical", "1"), ("error", "1"), ("warning", "1"), ("info", "1")):
        assert _tile(html, label) == count
    assert _tile(html, "fleet incidents") == "1"
    assert _tile(html, "terminals") == "4"
    # Six incidents opened today, the resolved one and the fleet incident included.
    assert "6 incidents opened in the last 7 days" in html
    assert 'href="/overview"' in html  # the header's first section


async def test_the_api_gives_the_same_counts(client: Client, engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        token = await create_api_token(conn, "wallboard", Role.VIEWER)
    response = await client.get("/api/v1/overview", headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200
    body = await response.json()
    assert (body["terminals"], body["online"], body["offline"], body["faulty"]) == (4, 3, 1, 3)
    assert {s["severity"]: s["count"] for s in body["open_incidents"]} == {
        "critical": 1,
        "error": 1,
        "warning": 1,
        "info": 1,
    }
    assert body["fleet_incidents"] == 1
    assert body["cases"] == {"due_today": 1, "overdue": 1}
    assert [(g["value"], g["terminals"], g["online"]) for g in body["by_model"]] == [
        ("A920", 2, 2),
        ("V400m", 2, 1),
    ]
    assert len(body["incidents_per_day"]) == 30
    assert body["incidents_per_day"][-1]["opened"] == 6
    assert sum(d["opened"] for d in body["incidents_per_day"]) == 6
    refused = await client.get(
        "/api/v1/overview?days=7", headers={"Authorization": f"Bearer {token}"}
    )
    assert refused.status == 400
    assert refused.content_type == "application/problem+json"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_anonymous_visitors_are_sent_to_login(client: Client) -> None:
    response = await client.get("/overview", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", "/overview")
    assert (await client.get("/api/v1/overview")).status == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_the_live_fragment_follows_a_change(
    client: Client, engine: AsyncEngine, seeded: dict[str, int]
) -> None:
    await _log_in(client)
    now = utcnow()
    async with engine.begin() as conn:
        resolved = partial(resolve_by_staff, by="vera", resolution="", now=now)
        await change_incident(conn, seeded["crit"], resolved)
        await apply_state(
            conn, "T-0002", State(online=True, agent_version="1", boot_id="b2", ts=now), now=now
        )
    response = await client.get("/fragments/overview?days=30")
    assert response.status == 200
    html = await response.text()
    assert _figure(html, "/?online=true") == "4"
    assert _figure(html, "/?online=false") == "0"
    assert _figure(html, "/?faulty=true") == "2"
    assert _tile(html, "critical") == "0"
    assert "6 incidents opened in the last 30 days" in html
    bad = await client.get("/overview?days=9")
    assert bad.status == 400
    assert "days must be 7 or 30" in await bad.text()
