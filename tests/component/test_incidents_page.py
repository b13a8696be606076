"""The incident pages: list, detail and the staff action forms, through a real server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.store.accounts import Role, create_user, list_audit
from posfleet.store.incidents import IncidentKind, IncidentSpec, open_incident, set_parent

SECRET = bytes(range(32))
PASSWORD = "receipt-roll-empty-42"
EVIL = "<script>alert(1)</script>"

Client = TestClient[web.Request, web.Application]


def _printer_spec(terminal_id: str) -> IncidentSpec:
    return IncidentSpec(
        rule_id="printer.not_ready",
        title="Printer cannot print",
        component="printer",
        severity="error",
        escalation="remote_fix",
        cause="The paper roll is empty or jammed.",
        remedy=["Open the cover and reload the paper roll", "Close the cover until it clicks"],
        terminal_id=terminal_id,
        site_id="S-7",
        merchant_id="M-42",
    )


async def _open(engine: AsyncEngine, spec: IncidentSpec, minutes_ago: int = 12) -> int:
    async with engine.begin() as conn:
        incident_id, _ = await open_incident(
            conn, spec, now=utcnow() - timedelta(minutes=minutes_ago)
        )
    return incident_id


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    eng = sqlite_engine
    async with eng.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
        await create_user(conn, "victor", PASSWORD, Role.VIEWER)
    return eng


async def _client(engine: AsyncEngine, username: str) -> Client:
    client = TestClient(TestServer(create_app(engine, session_secret=SECRET)))
    await client.start_server()
    login_page = await (await client.get("/login")).text()
    form = {"csrf_token": _csrf(login_page), "username": username, "password": PASSWORD}
    response = await client.post("/login", data=form, allow_redirects=False)
    assert response.status == 303
    return client


@pytest.fixture
async def support(engine: AsyncEngine) -> AsyncIterator[Client]:
    client = await _client(engine, "alice")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def viewer(engine: AsyncEngine) -> AsyncIterator[Client]:
    client = await _client(engine, "victor")
    try:
        yield client
    finally:
        await client.close()


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


async def _page(client: Client, path: str) -> str:
    response = await client.get(path)
    assert response.status == 200, await response.text()
    return await response.text()


async def _act(client: Client, incident_id: int, action: str, **fields: str) -> None:
    token = _csrf(await _page(client, f"/incidents/{incident_id}"))
    response = await client.post(
        f"/incidents/{incident_id}/{action}",
        data={"csrf_token": token, **fields},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == f"/incidents/{incident_id}"


async def test_empty_list_says_there_is_nothing_open(support: Client) -> None:
    html = await _page(support, "/incidents")
    assert "No open incidents" in html
    assert '<a href="/incidents">Incidents</a>' in html


async def test_list_shows_unresolved_incidents_newest_first_with_a_fleet_row(
    support: Client, engine: AsyncEngine
) -> None:
    older = await _open(engine, _printer_spec("T-0001"), minutes_ago=30)
    newer = await _open(engine, _printer_spec("T-0002"), minutes_ago=12)
    fleet_spec = IncidentSpec(
        rule_id="host.unreachable",
        title="Acquirer host unreachable at many sites",
        component="network",
        severity="critical",
        escalation="remote_fix",
        cause="The acquirer host does not answer.",
        remedy=["Check the acquirer status page"],
        kind=IncidentKind.FLEET,
        correlation="host.unreachable",
    )
    fleet = await _open(engine, fleet_spec, minutes_ago=5)
    async with engine.begin() as conn:
        await set_parent(conn, [older, newer], fleet, now=utcnow())

    html = await _page(support, "/incidents")
    # Children fold into their fleet incident: one row says how many terminals it holds.
    assert "fleet: 2 terminals" in html
    assert "T-0001" not in html
    assert '<span class="badge bad">critical</span>' in html
    assert "5 min ago" in html

    await _act(support, fleet, "resolve", resolution="acquirer fixed its side")
    html = await _page(support, "/incidents")
    assert "No open incidents" in html
    resolved = await _page(support, "/incidents?state=resolved")
    assert f'href="/incidents/{fleet}"' in resolved


async def test_detail_shows_cause_remedy_escalation_and_terminal(
    support: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _printer_spec("T-0003"))
    listing = await _page(support, "/incidents")
    assert f'href="/incidents/{incident_id}"><code>T-0003</code>' in listing
    assert "S-7 / M-42" in listing
    assert "12 min ago" in listing

    html = await _page(support, f"/incidents/{incident_id}")
    assert "The paper roll is empty or jammed." in html
    assert (
        '<ol class="remedy"><li>Open the cover and reload the paper roll</li>'
        "<li>Close the cover until it clicks</li></ol>" in html
    )
    assert "Remote fix" in html
    assert "This terminal has not reported yet." in html
    assert 'action="/incidents/' in html


async def test_missing_incident_is_a_404_page(support: Client) -> None:
    response = await support.get("/incidents/999999")
    assert response.status == 404
    assert "no incident #999999" in await response.text()
    assert (await support.get("/incidents/abc")).status == 400


async def test_acknowledge_note_and_resolve_change_the_page(
    support: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _printer_spec("T-0004"))

    await _act(support, incident_id, "ack")
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<span class="badge warn">acknowledged</span>' in html
    assert "Acknowledged by <b>user:alice</b>" in html
    assert ">Acknowledge</button>" not in html

    await _act(support, incident_id, "notes", text="merchant reloaded the roll")
    html = await _page(support, f"/incidents/{incident_id}")
    assert "<q>merchant reloaded the roll</q>" in html

    await _act(support, incident_id, "resolve", resolution="test page printed")
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<span class="badge ok">resolved</span>' in html
    assert "<q>test page printed</q>" in html
    assert ">Resolve</button>" not in html

    async with engine.connect() as conn:
        actions = [entry.action for entry in await list_audit(conn)]
    assert {"incident.acknowledge", "incident.note", "incident.resolve"} <= set(actions)


async def test_a_note_with_markup_is_shown_as_text(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0005"))
    await _act(support, incident_id, "notes", text=EVIL)
    html = await _page(support, f"/incidents/{incident_id}")
    assert EVIL not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


async def test_post_without_csrf_token_is_refused(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0006"))
    response = await support.post(f"/incidents/{incident_id}/ack", data={}, allow_redirects=False)
    assert response.status == 403
    assert "reload the page" in await response.text()
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<span class="badge bad">open</span>' in html


async def test_viewer_sees_no_actions_and_cannot_act(
    viewer: Client, support: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _printer_spec("T-0007"))
    html = await _page(viewer, f"/incidents/{incident_id}")
    assert "The paper roll is empty or jammed." in html
    assert f'action="/incidents/{incident_id}' not in html

    token = _csrf(html)  # the viewer's own logout token: a valid token, the wrong role
    for action in ("ack", "notes", "resolve"):
        response = await viewer.post(
            f"/incidents/{incident_id}/{action}",
            data={"csrf_token": token, "text": "x", "resolution": "x"},
            allow_redirects=False,
        )
        assert response.status == 403
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<span class="badge bad">open</span>' in html
    assert "<q>x</q>" not in html


async def test_acknowledging_twice_is_a_clear_error(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0008"))
    token = _csrf(await _page(support, f"/incidents/{incident_id}"))
    await _act(support, incident_id, "ack")
    response = await support.post(
        f"/incidents/{incident_id}/ack", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 400
    assert "only an open one can be acknowledged" in await response.text()
