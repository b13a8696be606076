"""The case pages through a real server over a migrated SQLite store: a support agent
opens a case from a terminal, links its incident, notes, follows up and closes it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from html import unescape

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import Inventory, State, utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import PRINCIPAL_KEY
from posfleet.dashboard.case_panel import load_cases_panel
from posfleet.dashboard.templating import make_environment
from posfleet.helpdesk import helpdesk_day
from posfleet.store import apply_inventory, apply_state
from posfleet.store.accounts import Principal, Role, create_user, list_audit
from posfleet.store.incidents import IncidentSpec, open_incident

SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
EVIL = "<script>alert(1)</script>"
T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
Client = TestClient[web.Request, web.Application]


async def _terminal_with_incident(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        state = State(online=True, agent_version="1.4.0", boot_id="b", ts=T0)
        await apply_state(conn, "T-CASE", state, now=T0)
        inventory = Inventory(
            model="V400m", serial="SN-1", hw_revision="B", firmware_version="5.2.1",
            agent_version="1.4.0", merchant_id="M-Cafe", site_id="S-1",
            timezone="Europe/Berlin", ts=T0,
        )  # fmt: skip
        await apply_inventory(conn, "T-CASE", inventory, now=T0)
        spec = IncidentSpec(
            rule_id="reader.errors", title="Card reader failing", component="reader",
            severity="error", escalation="remote", cause="chip reads fail",
            remedy=["clean the reader"], terminal_id="T-CASE",
        )  # fmt: skip
        incident_id, _ = await open_incident(conn, spec, now=utcnow())
    return incident_id


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@pytest.fixture
async def support(sqlite_engine: AsyncEngine) -> AsyncIterator[Client]:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
    client = TestClient(TestServer(create_app(sqlite_engine, session_secret=SECRET)))
    await client.start_server()
    form = await (await client.get("/login")).text()
    data = {"csrf_token": _csrf(form), "username": "sam", "password": PASSWORD}
    assert (await client.post("/login", data=data, allow_redirects=False)).status == 303
    try:
        yield client
    finally:
        await client.close()


async def _post(client: Client, page: str, path: str, **fields: str) -> str:
    """Submit a form of ``page`` to ``path``; the page the redirect leads to."""
    token = _csrf(await (await client.get(page)).text())
    response = await client.post(path, data={"csrf_token": token, **fields})
    assert response.status == 200, await response.text()
    return await response.text()


async def test_a_case_from_the_terminal_to_the_merchants_confirmation(
    support: Client, sqlite_engine: AsyncEngine
) -> None:
    incident_id = await _terminal_with_incident(sqlite_engine)
    new_form = await (await support.get("/cases/new?terminal=T-CASE")).text()
    assert 'value="M-Cafe"' in new_form and 'value="T-CASE"' in new_form

    page = await _post(
        support, "/cases/new", "/cases",
        merchant_id="M-Cafe", terminal_ids="T-CASE", channel="phone", category="card_reader",
        priority="high", complaint=f"Chip cards fail since this morning {EVIL}", subject="",
    )  # fmt: skip
    assert EVIL not in page  # escaped
    case_path = re.search(r'action="(/cases/\d+)/notes"', page).group(1)  # type: ignore[union-attr]
    assert f'id="link-incident-{incident_id}"' in page
    assert "Chip cards fail since this morning" in _text(page)

    page = await _post(
        support, case_path, f"{case_path}/links", kind="incident", ref=str(incident_id)
    )
    assert f'data-link-ref="{incident_id}"' in page and 'data-state="open"' in page
    assert f'id="link-incident-{incident_id}"' not in page  # offered only until linked
    page = await _post(support, case_path, f"{case_path}/notes", text="Asked to clean the reader")
    today = helpdesk_day(utcnow()).isoformat()
    page = await _post(
        support, case_path, f"{case_path}/follow-up", follow_up_on=today,
        follow_up_note="call back after lunch",
    )  # fmt: skip
    assert "due today" in _text(page)
    listing = _text(await (await support.get("/cases")).text())
    assert "1 due today, 0 overdue" in listing

    token = _csrf(page)
    refused = await support.post(
        f"{case_path}/state", data={"csrf_token": token, "state": "closed", "confirmation": ""}
    )
    assert refused.status == 400
    assert "merchant's confirmation" in _text(await refused.text())
    page = await _post(
        support, case_path, f"{case_path}/state", state="closed",
        confirmation="Mrs Li: payments work again",
    )  # fmt: skip
    assert 'data-state="closed"' in page and "Mrs Li: payments work again" in page
    assert 'id="case-close-form"' not in page
    assert "No follow-up is due." in _text(await (await support.get("/cases")).text())

    async with sqlite_engine.connect() as conn:
        actions = [
            (e.actor, e.action)
            for e in await list_audit(conn)
            if e.target == case_path[1:].replace("/", ":").replace("cases", "case")
        ]
    assert actions[::-1] == [
        ("user:sam", "case.open"),
        ("user:sam", "case.link"),
        ("user:sam", "case.note"),
        ("user:sam", "case.follow_up"),
        ("user:sam", "case.state"),
    ]


async def test_the_terminal_panel_offers_a_case_and_links_its_incident(
    support: Client, sqlite_engine: AsyncEngine
) -> None:
    incident_id = await _terminal_with_incident(sqlite_engine)

    # The loader reads only the principal from the request (the terminal page passes its own).
    request: dict[object, object] = {}
    request[PRINCIPAL_KEY] = Principal("user", 1, "sam", Role.SUPPORT)
    env = make_environment()

    async def panel() -> str:
        async with sqlite_engine.connect() as conn:
            context = await load_cases_panel(conn, "T-CASE", request)  # type: ignore[arg-type]
        return env.get_template("panel_cases.html").render(
            {**context, "csrf_token": "t", "terminal_id": "T-CASE"}
        )

    html = await panel()
    assert 'href="/cases/new?terminal=T-CASE"' in html and "No case for this terminal." in html
    terminal_page = await (await support.get("/terminals/T-CASE")).text()
    assert 'id="panel-cases"' in terminal_page and 'id="open-case-link"' in terminal_page
    page = await _post(
        support, "/cases/new", "/cases", merchant_id="M-Cafe", terminal_ids="T-CASE",
        channel="phone", category="card_reader", priority="normal", complaint="reader",
    )  # fmt: skip
    case_id = re.search(r'action="/cases/(\d+)/notes"', page).group(1)  # type: ignore[union-attr]
    html = await panel()
    assert f'id="panel-link-incident-{incident_id}"' in html
    # The panel's button links the incident and returns to the terminal's page.
    token = _csrf(page)
    response = await support.post(
        f"/cases/{case_id}/links",
        data={"csrf_token": token, "kind": "incident", "ref": str(incident_id),
              "next": "/terminals/T-CASE"},
        allow_redirects=False,
    )  # fmt: skip
    assert response.status == 303 and response.headers["Location"] == "/terminals/T-CASE"
    assert f'id="panel-link-incident-{incident_id}"' not in await panel()
