"""The dashboard in a real browser: the fleet changing live, layouts at two widths, CJK text.

The layout and font tests serve the dashboard itself on a free port over a seeded SQLite
fleet (no broker needed); the live test runs the whole central service and a simulated
terminal.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page
from sqlalchemy.ext.asyncio import AsyncEngine

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
from posfleet.simulator.fleet import FleetOptions, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.accounts import Role, create_user
from posfleet.store.incidents import (
    IncidentKind,
    IncidentSpec,
    RunState,
    finish_playbook_run,
    open_incident,
    set_parent,
    start_playbook_run,
)
from tests.harness import PrivateBroker
from tests.harness.browser import chromium
from tests.harness.central_service import start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
CHINESE_MERCHANT = "上海浦东便利店"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def test_support_user_sees_a_terminal_go_offline_live(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    terminal_id = f"WEB-{tmp_path.name[-8:]}"
    terminal = FleetTerminal(
        terminal_id=terminal_id,
        password=broker.provision_terminal(terminal_id).password,
        merchant_id="M-77",
        site_id="<b>site</b>",
        seed=5,
    )
    stop = asyncio.Event()
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "f")
    async with start_central(broker, tmp_path / "c", sqlite_url) as central:
        async with central.service.engine.begin() as conn:
            await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
        fleet = asyncio.create_task(run_fleet([terminal], options, stop))
        try:
            async with chromium() as browser:
                page = await browser.new_page()
                await page.goto(central.service.url + "/")
                assert "/login" in page.url  # not logged in: sent to the login form
                await page.fill("input[name=username]", "sam")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")

                row = page.locator("tr", has_text=terminal_id)
                await row.get_by_text("online", exact=True).wait_for(timeout=20_000)
                # Escaped, not interpreted: the site name shows its angle brackets.
                assert await row.get_by_text("<b>site</b>").count() == 1

                stop.set()
                await fleet
                # The agent said goodbye; the page refreshes itself, no reload.
                await row.get_by_text("offline", exact=True).wait_for(timeout=20_000)
                assert "Updated" in (await page.locator("#refresh-status").inner_text())
        finally:
            stop.set()
            await fleet


# -- a seeded fleet, served by the dashboard alone -----------------------------------------


@dataclass(frozen=True)
class SeededFleet:
    """What the layout tests open: the dashboard's URL and the incidents worth looking at."""

    url: str
    printer_incident: int
    fleet_incident: int


def _metrics(index: int) -> HealthMetrics:
    failing_reader = index == 1
    return HealthMetrics(
        battery=Battery(percent=12 if index == 7 else 64 + index, charging=index % 3 == 0)
        if index % 2
        else None,
        temperature_c=38.5,
        printer=Printer(status=PrinterStatus.NO_PAPER if index == 2 else PrinterStatus.OK),
        card_reader=CardReader(
            chip=ReaderCounters(reads=48, errors=11 if failing_reader else 0),
            contactless=ReaderCounters(reads=30 + index, errors=0),
            insertions_total=8_000 + index,
        ),
        network=Network(
            type=NetworkType.WIFI if index % 2 else NetworkType.ETHERNET,
            rssi_dbm=-58 - index * 2 if index % 2 else None,
            host_reachable=not 11 <= index <= 14,
            latency_ms=90.0,
        ),
        storage_used_pct=40,
        memory_used_pct=55,
        uptime_s=90_000 + index,
    )


def _spec(terminal_id: str | None, **fields: Any) -> IncidentSpec:
    base: dict[str, Any] = {
        "rule_id": "printer.not_ready",
        "title": "Printer cannot print",
        "component": "printer",
        "severity": "error",
        "escalation": "remote_fix",
        "cause": "The receipt roll is empty.",
        "remedy": ["Open the cover", "Put in a new roll, paper end towards the tear bar"],
        "terminal_id": terminal_id,
        "merchant_id": "M1001",
        "site_id": "S-BERLIN-01",
    }
    base.update(fields)
    return IncidentSpec(**base)


async def _seed(engine: AsyncEngine) -> tuple[int, int]:
    """Twenty terminals as the demo has them; returns (printer incident, fleet incident)."""
    now = utcnow()
    async with engine.begin() as conn:
        await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
        for index in range(1, 21):
            terminal_id = f"DEMO-{index:04d}"
            state = State(online=index != 20, agent_version="1.4.0", boot_id="b-1", ts=now)
            await apply_state(conn, terminal_id, state, now=now)
            inventory = Inventory(
                model="V400m" if index % 2 else "Move/5000",
                serial=f"SN-40{index:04d}-2231",
                firmware_version="5.2.1",
                agent_version="1.4.0",
                merchant_id=CHINESE_MERCHANT if index == 3 else f"M{1000 + (index + 3) // 4}",
                site_id=f"S-BERLIN-{(index + 3) // 4:02d}",
                ts=now,
            )
            await apply_inventory(conn, terminal_id, inventory, now=now)
            report = HealthReport(seq=1, ts=now, interval_s=30, metrics=_metrics(index))
            await apply_health(conn, terminal_id, report, now=now)

        opened = now - timedelta(minutes=4)
        reader = _spec(
            "DEMO-0001",
            rule_id="card_reader.errors",
            title="Card reads failing",
            component="card_reader",
            severity="warning",
            escalation="swap",
        )
        await open_incident(conn, reader, now=opened)
        printer_id, _ = await open_incident(conn, _spec("DEMO-0002"), now=opened)
        run_id = await start_playbook_run(
            conn,
            terminal_id="DEMO-0002",
            playbook="printer_not_printing",
            started_by="user:sam",
            now=opened,
            deadline=opened + timedelta(minutes=2),
            incident_id=printer_id,
        )
        step = {
            "command": "printer_test",
            "label": "Print a test page",
            "command_id": "c-1",
            "status": "failed",
            "passed": False,
            "finding": "the printer reports no paper",
            "remedy": ["Put in a new roll"],
            "output": {"printer": "no_paper"},
            "error": None,
        }
        await finish_playbook_run(
            conn,
            run_id,
            state=RunState.SUCCEEDED,
            verdict="The printer is out of paper",
            remedy=["Put in a new roll"],
            steps=[step],
            now=opened + timedelta(seconds=20),
        )
        outage = _spec(
            None,
            kind=IncidentKind.FLEET,
            rule_id="network.host_unreachable",
            title="Acquirer host unreachable at a site",
            component="network",
            severity="critical",
            escalation="on_site",
            correlation="site:S-BERLIN-03",
            site_id="S-BERLIN-03",
        )
        fleet_id, _ = await open_incident(conn, outage, now=opened)
        children = []
        for index in range(11, 15):
            child = _spec(
                f"DEMO-{index:04d}",
                rule_id="network.host_unreachable",
                title="Acquirer host unreachable",
                component="network",
                site_id="S-BERLIN-03",
            )
            children.append((await open_incident(conn, child, now=opened))[0])
        await set_parent(conn, children, fleet_id, now=opened)
    return printer_id, fleet_id


@asynccontextmanager
async def _served(engine: AsyncEngine) -> AsyncIterator[str]:
    """The dashboard over ``engine`` on a free loopback port; yields its base URL."""
    runner = web.AppRunner(create_app(engine, session_secret=bytes(range(32))))
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def seeded(sqlite_engine: AsyncEngine) -> AsyncIterator[SeededFleet]:
    printer_id, fleet_id = await _seed(sqlite_engine)
    async with _served(sqlite_engine) as url:
        yield SeededFleet(url, printer_id, fleet_id)


async def _logged_in(browser: Browser, url: str, width: int) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    await page.goto(url + "/")  # sent to the login form, and back to the fleet after it
    await page.fill("input[name=username]", "sam")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.get_by_role("heading", name="Fleet").wait_for()
    return page


async def _horizontal_overflow(page: Page) -> tuple[int, int]:
    sizes = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    return int(sizes[0]), int(sizes[1])


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    assert len(data) > 5_000, f"{path.name} is nearly empty ({len(data)} bytes)"


@pytest.mark.parametrize("width", [800, 1366])
async def test_pages_fit_the_window_at_common_widths(
    seeded: SeededFleet, tmp_path: Path, width: int
) -> None:
    pages = {
        "fleet": "/",
        "fleet-search": "/?q=DEMO-000",
        "incidents": "/incidents",
        "incident-printer": f"/incidents/{seeded.printer_incident}",
        "incident-fleet": f"/incidents/{seeded.fleet_incident}",
        "terminal": "/terminals/DEMO-0001",
        "terminal-unknown": "/terminals/DEMO-9999",
    }
    async with chromium() as browser:
        page = await _logged_in(browser, seeded.url, width)
        for name, path in pages.items():
            await page.goto(seeded.url + path)
            await page.locator("main h1").first.wait_for()
            scroll_width, window_width = await _horizontal_overflow(page)
            assert scroll_width <= window_width, (
                f"{name} at {width} px scrolls sideways: {scroll_width} > {window_width}"
            )
            shot = tmp_path / f"{name}-{width}.png"
            await page.screenshot(path=shot, full_page=True)
            _assert_png(shot)
            if name == "incident-printer":
                # The rule's own answer to "who fixes it": the merchant reloads the paper.
                assert "On site, by the merchant" in await page.locator("main").inner_text()

        # The fleet table may scroll inside its box, but the terminal column with the
        # incident marker stays in view: a failing terminal never hides off screen.
        await page.goto(seeded.url + "/")
        marker = page.locator("tr.incident .marker").first
        assert await marker.inner_text() == "Card reads failing"
        box = await marker.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width
        await page.locator(".table-scroll").first.evaluate("box => { box.scrollLeft = 10000; }")
        box = await marker.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width


async def test_search_box_narrows_the_fleet_and_the_header_says_so(seeded: SeededFleet) -> None:
    async with chromium() as browser:
        page = await _logged_in(browser, seeded.url, 1366)
        # The fleet list's own box, beside its filters (the header's box goes to /search).
        main = page.locator("main")
        await main.get_by_role("searchbox").fill("DEMO-0001")
        await main.get_by_role("button", name="Search").click()
        await page.wait_for_url("**/?q=DEMO-0001*")
        summary = page.locator("p.summary")
        assert (await summary.inner_text()).startswith("1 of 20 terminals matches 'DEMO-0001'")
        assert await page.locator("tbody tr").count() == 1
        await page.get_by_role("link", name="DEMO-0001").click()
        await page.get_by_role("heading", name="Terminal DEMO-0001").wait_for()
        assert await page.get_by_role("link", name="Card reads failing").count() == 1


async def test_chinese_merchant_name_renders_in_a_cjk_font(
    seeded: SeededFleet, tmp_path: Path
) -> None:
    async with chromium() as browser:
        page = await _logged_in(browser, seeded.url, 1366)
        await page.goto(seeded.url + "/?q=DEMO-0003")
        cell = page.locator('tr[data-terminal-id="DEMO-0003"] td').nth(5)
        assert await cell.inner_text() == CHINESE_MERCHANT
        family = await cell.evaluate("cell => getComputedStyle(cell).fontFamily")
        assert '"Noto Sans CJK SC"' in family

        # Ask the browser which installed fonts drew the text: every glyph must come
        # from a CJK font, none from a fallback that draws boxes.
        cdp = await page.context.new_cdp_session(page)
        await cdp.send("DOM.enable")
        await cdp.send("CSS.enable")
        root = await cdp.send("DOM.getDocument", {"depth": 0})
        node = await cdp.send(
            "DOM.querySelector",
            {
                "nodeId": root["root"]["nodeId"],
                "selector": 'tr[data-terminal-id="DEMO-0003"] td:nth-child(6)',
            },
        )
        used = await cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})
        fonts = {font["familyName"]: int(font["glyphCount"]) for font in used["fonts"]}
        cjk = sum(count for name, count in fonts.items() if "CJK" in name)
        assert cjk == len(CHINESE_MERCHANT), fonts

        shot = tmp_path / "fleet-chinese.png"
        await cell.screenshot(path=shot)
        assert shot.read_bytes()[:8] == PNG_SIGNATURE
