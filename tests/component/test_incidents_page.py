"""The incident pages: list, detail and the staff action forms, through a real server."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from html import unescape

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.incidents_api import PLAYBOOK_RUNNER_KEY
from posfleet.diagnostics.incident_recorder import resolve_cleared
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.store.accounts import Role, create_user, list_audit
from posfleet.store.cases import (
    CaseCategory,
    CaseChannel,
    CaseDraft,
    CaseLinkKind,
    add_case_link,
    insert_case,
)
from posfleet.store.incidents import (
    IncidentKind,
    IncidentSpec,
    open_incident,
    set_parent,
    terminal_open_key,
)
from tests.component.test_dashboard_pages import _add_terminal as add_terminal

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


async def _client(
    engine: AsyncEngine, username: str, runner: PlaybookRunner | None = None
) -> Client:
    app = create_app(engine, session_secret=SECRET)
    if runner is not None:
        app[PLAYBOOK_RUNNER_KEY] = runner
    client = TestClient(TestServer(app))
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


def html_text(page: str) -> str:
    """A page's text as a reader sees it: entities decoded."""
    return unescape(page)


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
    # Once resolved, the row still says how many terminals were affected.
    assert "fleet: 2 terminals" in resolved
    assert "fleet: 0 terminals" not in resolved


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
    # The merchant reloads the paper: the page must not promise a fix over the phone.
    assert 'data-fixed-by="merchant"' in html
    assert "On site, by the merchant" in html
    assert "Remote fix" not in html
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
    for action in ("ack", "notes", "resolve", "assign", "escalate", "playbooks"):
        response = await viewer.post(
            f"/incidents/{incident_id}/{action}",
            data={
                "csrf_token": token,
                "text": "x",
                "resolution": "x",
                "assignee": "victor",
                "to": "swap",
                "playbook": "printer_check",
            },
            allow_redirects=False,
        )
        assert response.status == 403
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<span class="badge bad">open</span>' in html
    assert "<q>x</q>" not in html
    assert 'data-fact="assignee">-<' in html
    assert "Escalated to" not in html


async def test_acknowledging_twice_is_a_clear_error(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0008"))
    token = _csrf(await _page(support, f"/incidents/{incident_id}"))
    await _act(support, incident_id, "ack")
    response = await support.post(
        f"/incidents/{incident_id}/ack", data={"csrf_token": token}, allow_redirects=False
    )
    assert response.status == 400
    assert "only an open one can be acknowledged" in await response.text()


# -- what the page says about an incident -----------------------------------------------


def _spec(rule_id: str, component: str, escalation: str, terminal_id: str) -> IncidentSpec:
    return IncidentSpec(
        rule_id=rule_id,
        title=f"{rule_id} on {terminal_id}",
        component=component,
        severity="warning",
        escalation=escalation,
        cause="some cause",
        remedy=["a step"],
        terminal_id=terminal_id,
        site_id="S-1",
        merchant_id="M1001",
    )


def _fact(html: str, key: str) -> str:
    match = re.search(rf'data-fact="{key}">(.*?)</dd>', html)
    assert match, f"the page shows no {key}"
    return re.sub(r"<[^>]+>", "", match.group(1))


async def test_one_occurrence_is_singular(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0010"))
    html = await _page(support, f"/incidents/{incident_id}")
    assert _fact(html, "occurrences") == "1 occurrence"
    assert "1 occurrences" not in html
    assert "Opened (1 occurrence so far)" in html

    await _open(engine, _printer_spec("T-0010"))
    html = await _page(support, f"/incidents/{incident_id}")
    assert _fact(html, "occurrences") == "2 occurrences"


@pytest.mark.parametrize(
    ("rule_id", "component", "escalation", "fixed_by", "words", "next_step"),
    [
        # A site's router: the merchant must act on site; support cannot fix it remotely.
        (
            "network.host_unreachable",
            "network",
            "remote_fix",
            "merchant",
            "On site, by the merchant",
            "remote fix",
        ),
        ("clock.drift", "clock", "remote_fix", "remote", "Remote fix", None),
        ("maintenance.print_head", "printer", "on_site", "technician", "Technician visit", None),
        ("tamper.detected", "tamper", "swap", "merchant", "On site, by the merchant", "swap"),
    ],
)
async def test_who_fixes_it_follows_the_rule(  # noqa: PLR0917
    support: Client,
    engine: AsyncEngine,
    rule_id: str,
    component: str,
    escalation: str,
    fixed_by: str,
    words: str,
    next_step: str | None,
) -> None:
    incident_id = await _open(engine, _spec(rule_id, component, escalation, "T-0011"))
    html = await _page(support, f"/incidents/{incident_id}")
    assert f'data-fixed-by="{fixed_by}"><strong>{words}: </strong>' in html
    others = {"On site, by the merchant", "Remote fix", "Technician visit"} - {words}
    section = html[html.index("<h2>Who fixes it</h2>") : html.index("<h2>Actions</h2>")]
    assert not [other for other in others if f"<strong>{other}: </strong>" in section]
    if next_step is None:
        assert "If that does not help" not in section
    else:
        assert "If that does not help" in section and next_step in section


async def test_auto_resolution_says_it_resolved_by_itself_and_when(
    support: Client, engine: AsyncEngine
) -> None:
    spec = _printer_spec("T-0012")
    incident_id = await _open(engine, spec, minutes_ago=30)
    async with engine.begin() as conn:
        cleared = utcnow() - timedelta(minutes=16)
        key = terminal_open_key("T-0012", spec.rule_id)
        assert await resolve_cleared(conn, key, now=cleared)
    html = await _page(support, f"/incidents/{incident_id}")
    assert "Resolved by itself: its condition cleared, 14 min after it opened" in html
    assert cleared.strftime("%Y-%m-%d %H:%M:%S UTC") in html
    assert _fact(html, "resolved") == "16 min ago, by itself"
    assert "someone" not in html


async def _site_outage(engine: AsyncEngine, terminal_ids: list[str]) -> tuple[int, list[int]]:
    """A site's router outage: one fleet incident over the terminals of site S-1."""
    children = []
    for index, terminal_id in enumerate(terminal_ids):
        spec = _spec("network.host_unreachable", "network", "remote_fix", terminal_id)
        children.append(await _open(engine, spec))
        if index < 2:
            await _open(engine, spec)  # two terminals saw it twice
    fleet_spec = IncidentSpec(
        rule_id="network.host_unreachable",
        title=f"Acquirer host unreachable: {len(terminal_ids)} terminals at site S-1",
        component="network",
        severity="error",
        escalation="remote_fix",
        cause="The site's network.",
        remedy=["Restart the router"],
        kind=IncidentKind.FLEET,
        correlation=f"site:S-1/network.host_unreachable/{terminal_ids[0]}",
        facts={"correlated_by": "site", "value": "S-1", "children": len(terminal_ids)},
        site_id="S-1",
    )
    fleet = await _open(engine, fleet_spec)
    await _open(engine, fleet_spec)  # the fleet incident itself was touched twice
    async with engine.begin() as conn:
        await set_parent(conn, children, fleet, now=utcnow())
    return fleet, children


async def test_fleet_incident_counts_every_terminal_and_shows_the_shared_merchant(
    support: Client, engine: AsyncEngine
) -> None:
    fleet, _children = await _site_outage(engine, ["FL-1", "FL-2", "FL-3", "FL-4"])
    html = await _page(support, f"/incidents/{fleet}")
    assert _fact(html, "occurrences") == "6 occurrences over 4 terminals"
    assert _fact(html, "merchant") == "M1001"
    assert _fact(html, "site") == "S-1"
    assert _fact(html, "terminal") == "Fleet incident over 4 terminals"
    assert 'data-fixed-by="merchant"' in html
    assert "Terminals affected (4)" in html

    async with engine.begin() as conn:
        key = terminal_open_key("FL-1", "network.host_unreachable")
        await resolve_cleared(conn, key, now=utcnow())
    listing = await _page(support, "/incidents")
    assert "fleet: 4 terminals, 3 still affected" in listing
    assert "S-1 / M1001" in listing


async def test_assign_and_escalate_from_the_page(support: Client, engine: AsyncEngine) -> None:
    incident_id = await _open(engine, _printer_spec("T-0014"))
    html = await _page(support, f"/incidents/{incident_id}")
    assert '<option value="alice">alice</option>' in html
    assert 'value="victor"' not in html, "a viewer cannot take an incident"

    await _act(support, incident_id, "assign", assignee="alice")
    html = await _page(support, f"/incidents/{incident_id}")
    assert _fact(html, "assignee") == "alice"
    assert "Assigned to <b>alice</b> by <b>user:alice</b>" in html
    assert '<option value="alice" selected>alice</option>' in html

    await _act(support, incident_id, "escalate", to="on_site", reason="roll holder broken")
    html = await _page(support, f"/incidents/{incident_id}")
    assert "Escalated to: <strong>technician visit</strong>" in html
    assert (
        "Escalated to <b>technician visit</b> by <b>user:alice</b>: <q>roll holder broken</q>"
        in html
    )

    await _act(support, incident_id, "assign", assignee="")
    html = await _page(support, f"/incidents/{incident_id}")
    assert _fact(html, "assignee") == "-"
    assert "Unassigned by <b>user:alice</b>" in html

    token = _csrf(html)
    for action, fields, message in (
        ("assign", {"assignee": "mallory"}, "no staff member 'mallory'"),
        ("escalate", {"to": "moon"}, "to is on_site, swap or remote_fix"),
    ):
        response = await support.post(
            f"/incidents/{incident_id}/{action}",
            data={"csrf_token": token, **fields},
            allow_redirects=False,
        )
        assert response.status == 400
        assert message in html_text(await response.text())
    response = await support.post(
        f"/incidents/{incident_id}/assign", data={"assignee": "alice"}, allow_redirects=False
    )
    assert response.status == 403, "no CSRF token, no assignment"

    async with engine.connect() as conn:
        audit = [(entry.action, entry.actor) for entry in await list_audit(conn)]
    assert ("incident.assign", "user:alice") in audit
    assert ("incident.escalate", "user:alice") in audit


@pytest.mark.parametrize("before", ["²", "99999999999999999999999", "9223372036854775808", "-1"])
async def test_a_bad_before_cursor_is_a_400_page_not_a_crash(support: Client, before: str) -> None:
    response = await support.get("/incidents", params={"before": before})
    assert response.status == 400
    assert "before" in await response.text()


async def test_an_incident_id_with_unicode_digits_is_refused(support: Client) -> None:
    response = await support.get("/incidents/²")
    assert response.status == 400


async def test_a_linked_case_is_on_the_incident_page(
    support: Client, viewer: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _printer_spec("T-0100"))
    html = await _page(support, f"/incidents/{incident_id}")
    assert "No case is linked to this incident." in html
    assert 'href="/cases/new?terminal=T-0100"' in html

    draft = CaseDraft(
        merchant_id="M-42",
        subject="Receipts come out blank",
        complaint="the printer prints nothing",
        channel=CaseChannel.PHONE,
        category=CaseCategory.PRINTER,
        terminal_ids=["T-0100"],
    )
    async with engine.begin() as conn:
        case_id = await insert_case(conn, draft, opened_by="user:alice", now=utcnow())
        await add_case_link(
            conn, case_id, CaseLinkKind.INCIDENT, str(incident_id), linked_by="alice", now=utcnow()
        )
    html = await _page(support, f"/incidents/{incident_id}")
    assert f'<a href="/cases/{case_id}">Case #{case_id}: Receipts come out blank</a>' in html
    assert "No case is linked" not in html
    # A viewer reads the link but is not offered to open a case.
    html = await _page(viewer, f"/incidents/{incident_id}")
    assert f'href="/cases/{case_id}"' in html
    assert "/cases/new" not in html


async def test_the_terminal_now_is_its_fleet_row(support: Client, engine: AsyncEngine) -> None:
    await add_terminal(engine, "T-0101", online=False)
    incident_id = await _open(engine, _printer_spec("T-0101"))
    html = await _page(support, f"/incidents/{incident_id}")
    section = html[html.index("<h2>Terminal now</h2>") : html.index("<h2>Timeline</h2>")]
    assert '<a href="/terminals/T-0101"><code>T-0101</code></a>' in section
    assert '<span class="badge bad">offline</span>' in section
    assert "V400m" in section and "has not reported" not in section
