"""The fleet page's search, incident markers and card-reader column, and the terminal page.

Through a real aiohttp server on SQLite, logged in as a viewer (the least role that reads).
"""

from __future__ import annotations

import html as html_module
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine
from yarl import URL

from posfleet.contract import (
    Battery,
    CardReader,
    HealthMetrics,
    HealthReport,
    Inventory,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    ReaderCounters,
    State,
    utcnow,
)
from posfleet.dashboard import create_app
from posfleet.diagnostics.incident_actions import change_incident
from posfleet.diagnostics.incident_lifecycle import resolve_by_staff
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.accounts import Role, create_user
from posfleet.store.incidents import IncidentSpec, open_incident

SECRET = bytes(range(32))
PASSWORD = "terminal-page-viewer-7"
EVIL = "<script>alert(1)</script>"

Client = TestClient[web.Request, web.Application]


def _health(
    *, chip_reads: int = 40, chip_errors: int = 0, contactless_reads: int = 10
) -> HealthMetrics:
    return HealthMetrics(
        battery=Battery(percent=81, charging=False, health_percent=93, cycles=212),
        printer=Printer(status=PrinterStatus.OK, lines_printed=120_400),
        card_reader=CardReader(
            chip=ReaderCounters(reads=chip_reads, errors=chip_errors),
            contactless=ReaderCounters(reads=contactless_reads, errors=0),
            insertions_total=9_120,
        ),
        network=Network(type=NetworkType.WIFI, rssi_dbm=-61, host_reachable=True, latency_ms=84),
        storage_used_pct=41,
        memory_used_pct=63,
        uptime_s=3 * 86_400 + 4 * 3_600 + 120,
    )


async def _terminal(
    engine: AsyncEngine,
    terminal_id: str,
    *,
    online: bool = True,
    merchant: str = "M1001",
    health: HealthMetrics | None = None,
) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        state = State(online=online, agent_version="1.4.0", boot_id="boot-7f3a", ts=now)
        await apply_state(conn, terminal_id, state, now=now)
        inventory = Inventory(
            model="V400m",
            serial=f"SN-{terminal_id}",
            firmware_version="5.2.1",
            agent_version="1.4.0",
            app_versions={"payment": "3.1.0"},
            merchant_id=merchant,
            site_id="S-7",
            timezone="Europe/Berlin",
            capabilities=["printer", "contactless"],
            ts=now,
        )
        await apply_inventory(conn, terminal_id, inventory, now=now)
        if health is not None:
            report = HealthReport(seq=1, ts=now, interval_s=30, metrics=health)
            await apply_health(conn, terminal_id, report, now=now)


def _reader_spec(terminal_id: str) -> IncidentSpec:
    return IncidentSpec(
        rule_id="card_reader.errors",
        title="Card reads failing",
        component="card_reader",
        severity="warning",
        escalation="swap",
        cause="More than 5% of card reads failed.",
        remedy=["Clean the reader"],
        terminal_id=terminal_id,
        merchant_id="M1001",
        site_id="S-7",
    )


async def _open(engine: AsyncEngine, spec: IncidentSpec) -> int:
    async with engine.begin() as conn:
        incident_id, _ = await open_incident(conn, spec, now=utcnow() - timedelta(minutes=3))
    return incident_id


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "victor", PASSWORD, Role.VIEWER)
    await _terminal(sqlite_engine, "DEMO-0001", health=_health(chip_reads=50, chip_errors=9))
    await _terminal(sqlite_engine, "DEMO-0002", health=_health())
    await _terminal(sqlite_engine, "DEMO-0010", online=False)
    await _terminal(
        sqlite_engine,
        "LAB-0001",
        merchant="M2002",
        health=_health(chip_reads=0, contactless_reads=0),
    )
    return sqlite_engine


@pytest.fixture
async def anonymous(engine: AsyncEngine) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(engine, session_secret=SECRET))) as client:
        yield client


@pytest.fixture
async def viewer(anonymous: Client) -> Client:
    login_page = await (await anonymous.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
    assert token
    form = {"csrf_token": token.group(1), "username": "victor", "password": PASSWORD}
    assert (await anonymous.post("/login", data=form, allow_redirects=False)).status == 303
    return anonymous


async def _html(client: Client, path: str, status: int = 200) -> str:
    response = await client.get(path)
    assert response.status == status, await response.text()
    return await response.text()


def _summary(html: str) -> str:
    match = re.search(r'<p class="summary">(.*?)</p>', html)
    assert match, "no summary line"
    return html_module.unescape(re.sub(r"<[^>]+>", "", match.group(1)))


def _current_status(html: str) -> list[str]:
    return re.findall(r'<a href="[^"]*" aria-current="page">([^<]+)</a>', html)


# -- fleet page ---------------------------------------------------------------------------


async def test_fleet_page_has_a_search_box_that_keeps_the_status_filter(viewer: Client) -> None:
    html = await _html(viewer, "/?online=true")
    form = re.search(
        r'<form method="get" action="/" role="search" class="search">(.*?)</form>', html
    )
    assert form, "no search form"
    assert 'name="q"' in form.group(1)
    assert '<input type="hidden" name="online" value="true">' in form.group(1)
    # The form is above the live section, so a refresh never replaces what is typed.
    assert html.index('role="search"') < html.index('id="live-section"')
    assert 'role="search"' not in await _html(viewer, "/fragments/fleet?online=true")


async def test_search_header_says_how_many_of_the_fleet_match(viewer: Client) -> None:
    html = await _html(viewer, "/?q=DEMO-0001")
    assert _summary(html) == "1 of 4 terminals matches 'DEMO-0001': 1 online 0 offline"
    assert "DEMO-0002" not in html
    assert 'value="DEMO-0001"' in html  # the box shows what was searched
    assert '<a href="/" class="clear">Clear search</a>' in html

    html = await _html(viewer, "/?q=demo")
    assert _summary(html) == "3 of 4 terminals match 'demo': 2 online 1 offline"
    # The status links keep the search; "All" means all states of the matches.
    assert 'href="/?q=demo&amp;online=false"' in html
    assert _current_status(html) == ["All"]

    html = await _html(viewer, "/?q=demo&online=false")
    assert _summary(html) == "1 of 4 terminals matches 'demo' and is offline"
    assert _current_status(html) == ["Offline"]
    assert "DEMO-0010" in html and "DEMO-0001" not in html

    # The fragment the page polls tells the same story.
    assert _summary(await _html(viewer, "/fragments/fleet?q=demo")).startswith("3 of 4 terminals")


async def test_search_without_matches_offers_the_whole_fleet(viewer: Client) -> None:
    html = await _html(viewer, "/?q=nowhere")
    assert _summary(html) == "0 of 4 terminals match 'nowhere': 0 online 0 offline"
    assert 'No terminal matches. <a href="/">Show the whole fleet</a>' in html


async def test_empty_search_lists_the_whole_fleet(viewer: Client) -> None:
    html = await _html(viewer, "/?q=++")
    assert _summary(html) == "4 terminals: 3 online 1 offline"
    assert "Clear search" not in html


async def test_online_filter_alone_says_how_many_are_online(viewer: Client) -> None:
    assert _summary(await _html(viewer, "/?online=true")) == "3 of 4 terminals are online"


async def test_other_filters_are_named_in_the_header_and_kept_by_the_search(
    viewer: Client,
) -> None:
    html = await _html(viewer, "/?merchant=M2002")
    assert _summary(html) == "1 of 4 terminals matches merchant 'M2002': 1 online 0 offline"
    # The merchant filter is a field of the fleet form, filled with the filter's value.
    assert 'name="merchant" value="M2002"' in html


async def test_rows_link_to_terminals_and_mark_open_incidents(
    viewer: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _reader_spec("DEMO-0001"))
    html = await _html(viewer, "/")
    row = re.search(r'<tr class="incident" data-terminal-id="DEMO-0001">(.*?)</tr>', html)
    assert row, "the terminal with an open incident is not marked"
    assert '<a href="/terminals/DEMO-0001"><code>DEMO-0001</code></a>' in row.group(1)
    assert f'href="/incidents/{incident_id}" class="badge warn marker"' in row.group(1)
    assert ">Card reads failing</a>" in row.group(1)
    # The card-reader column shows the failing reads the incident is about.
    assert 'title="9 of 60 reads failed since the terminal' in row.group(1)
    assert '<span class="badge bad">15% failed (9/60)</span>' in row.group(1)

    healthy = re.search(r'<tr data-terminal-id="DEMO-0002">(.*?)</tr>', html)
    assert healthy and "marker" not in healthy.group(1)
    assert '<span class="badge ok">ok</span>' in healthy.group(1)
    assert "no reads yet" in html  # LAB-0001 has read no card since it started
    assert '<th scope="col">Card reader</th>' in html


async def test_several_open_incidents_link_to_the_terminal_page(
    viewer: Client, engine: AsyncEngine
) -> None:
    await _open(engine, _reader_spec("DEMO-0002"))
    printer = IncidentSpec(
        rule_id="printer.not_ready",
        title="Printer cannot print",
        component="printer",
        severity="error",
        escalation="remote_fix",
        cause="No paper.",
        remedy=["Reload paper"],
        terminal_id="DEMO-0002",
    )
    await _open(engine, printer)
    html = await _html(viewer, "/")
    assert (
        '<a href="/terminals/DEMO-0002#incidents" class="badge bad marker" '
        'title="Open: Printer cannot print; Card reads failing">2 open incidents</a>'
    ) in html


# -- terminal page ------------------------------------------------------------------------


async def test_terminal_page_shows_registry_health_and_open_incidents(
    viewer: Client, engine: AsyncEngine
) -> None:
    incident_id = await _open(engine, _reader_spec("DEMO-0001"))
    old_id = await _open(engine, _old_spec())
    async with engine.begin() as conn:
        by_alice = partial(resolve_by_staff, by="user:alice", resolution="cleared", now=utcnow())
        await change_incident(conn, old_id, by_alice)
    html = await _html(viewer, "/terminals/DEMO-0001")
    assert "<title>Terminal DEMO-0001 - posfleet</title>" in html
    assert 'href="/incidents"' in html and "victor" in html  # the usual header, logged in
    incidents = html[html.index('id="incidents"') : html.index("Recently resolved")]
    assert "Open incidents (1)" in incidents
    assert f'<a href="/incidents/{incident_id}">Card reads failing</a>' in incidents
    resolved = html[html.index("Recently resolved") :]
    assert f'<a href="/incidents/{old_id}">Printer was jammed</a>' in resolved
    for fact in (
        "<dt>Serial number</dt><dd>SN-DEMO-0001</dd>",
        "<dt>Merchant</dt><dd>M1001</dd>",
        "<dt>Time zone</dt><dd>Europe/Berlin</dd>",
        "<dt>Capabilities</dt><dd>printer, contactless</dd>",
    ):
        assert fact in html
    assert _health_item(html, "uptime") == ("ok", "3 d 4 h")
    assert _health_item(html, "memory") == ("ok", "63% used")
    assert _health_item(html, "reader_chip") == ("fault", "9 of 50 reads failed (18%)")
    assert "120,400 lines printed" in html
    assert "payment <code>3.1.0</code>" in html


def _health_item(html: str, key: str) -> tuple[str, str]:
    """A health item's class and reading (without its details list)."""
    match = re.search(
        rf'<div class="health-item (\w+)" data-health="{key}".*?<dd><span[^>]*>\w+</span> ([^<]*)',
        html,
        re.DOTALL,
    )
    assert match, f"no health item {key}"
    return match.group(1), html_module.unescape(match.group(2)).strip()


def _old_spec() -> IncidentSpec:
    return IncidentSpec(
        rule_id="printer.jam",
        title="Printer was jammed",
        component="printer",
        severity="error",
        escalation="remote_fix",
        cause="Jam.",
        remedy=["Clear the jam"],
        terminal_id="DEMO-0001",
    )


async def test_terminal_without_incidents_or_health_says_so(viewer: Client) -> None:
    html = await _html(viewer, "/terminals/DEMO-0010")
    assert "This terminal has no open incident." in html
    assert "This terminal has sent no health report yet." in html
    assert '<span class="badge bad">offline</span>' in html


async def test_unknown_terminal_is_a_404_page_with_ways_on(viewer: Client) -> None:
    response = await viewer.get("/terminals/DEMO-9999")
    assert response.status == 404
    html = await response.text()
    assert "No such terminal" in html
    assert "<code>DEMO-9999</code> has reported to this centre" in html
    assert '<a href="/?q=DEMO-9999">Search the fleet for' in html
    assert '<a href="/">Back to the fleet</a>' in html
    assert 'href="/incidents"' in html  # the header with its sections, not a bare error

    evil = await viewer.get("/terminals/" + EVIL.replace("/", "%2F"))
    assert evil.status == 404
    text = await evil.text()
    assert "<script>alert" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


async def test_terminal_page_needs_a_login(anonymous: Client) -> None:
    response = await anonymous.get("/terminals/DEMO-0001", allow_redirects=False)
    assert response.status == 303
    location = URL(response.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", "/terminals/DEMO-0001")


async def test_terminals_list_path_leads_to_the_fleet_page(viewer: Client) -> None:
    response = await viewer.get("/terminals?q=LAB", allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/?q=LAB")
