"""The incident pages in a real browser, against the real broker and simulated terminals.

A printer runs out of paper: support takes the incident and runs the suggested playbook,
which shows what the printer reported. A site's router fails: four terminals become one
fleet incident that names their merchant, runs a playbook on each terminal and, once the
router is back, resolves by itself and still says how many terminals it held.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet import FleetOptions, FleetRun, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.browser import chromium
from tests.harness.central_service import CentralUnderTest, start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class Running:
    """The central service, the simulated fleet and a browser logged in as support."""

    central: CentralUnderTest
    run: FleetRun
    browser: Browser
    page: Page


@asynccontextmanager
async def _running(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str, terminals: list[FleetTerminal]
) -> AsyncIterator[Running]:
    stop = asyncio.Event()
    run = FleetRun()
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "f")
    async with start_central(broker, tmp_path / "c", sqlite_url) as central:
        async with central.service.engine.begin() as conn:
            await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
        fleet = asyncio.create_task(run_fleet(terminals, options, stop, run=run))
        try:
            async with chromium() as browser:
                page = await browser.new_page()
                await page.goto(central.service.url + "/incidents")
                assert "/login" in page.url
                await page.fill("input[name=username]", "sam")
                await page.fill("input[name=password]", PASSWORD)
                await page.click("button[type=submit]")
                await page.get_by_text("No open incidents").wait_for(timeout=20_000)
                await async_wait_for(
                    lambda: all(t.terminal_id in run.terminals for t in terminals),
                    20,
                    description="the simulated terminals started",
                )
                yield Running(central, run, browser, page)
        finally:
            stop.set()
            await fleet


def _terminal(broker: PrivateBroker, terminal_id: str, merchant: str, site: str) -> FleetTerminal:
    return FleetTerminal(
        terminal_id=terminal_id,
        password=broker.provision_terminal(terminal_id).password,
        merchant_id=merchant,
        site_id=site,
        seed=7,
    )


async def _fact(page: Page, key: str) -> str:
    return await page.locator(f'dd[data-fact="{key}"]').inner_text()


async def _fits(browser: Browser, page: Page, tmp_path: Path, name: str) -> None:
    """The page at 800 and 1366 px: no sideways scrolling, and a screenshot of each."""
    cookies = await page.context.cookies()
    for width in (800, 1366):
        context = await browser.new_context(viewport={"width": width, "height": 900})
        await context.add_cookies(cookies)  # type: ignore[arg-type]
        other = await context.new_page()
        await other.goto(page.url)
        await other.locator("main h1").first.wait_for()
        scroll, window = await other.evaluate(
            "[document.documentElement.scrollWidth, window.innerWidth]"
        )
        assert scroll <= window, f"{name} at {width} px scrolls sideways: {scroll} > {window}"
        shot = tmp_path / f"{name}-{width}.png"
        await other.screenshot(path=shot, full_page=True)
        assert shot.read_bytes()[:8] == PNG_SIGNATURE
        await context.close()


async def test_support_runs_the_printer_playbook_and_sees_the_printers_finding(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    terminal_id = f"INC-{tmp_path.name[-8:]}"
    terminals = [_terminal(broker, terminal_id, "M-88", "S-3")]
    async with _running(broker, tmp_path, sqlite_url, terminals) as env:
        page = env.page
        env.run.terminals[terminal_id].inject(FaultName.PAPER_OUT)

        # The list refreshes itself: the printer incident appears without a reload.
        row = page.locator("tr", has_text=terminal_id)
        await row.wait_for(timeout=30_000)
        assert await row.get_by_text("open", exact=True).count() == 1
        await row.get_by_role("link", name=terminal_id).click()

        await page.get_by_role("heading", name="What to do").wait_for()
        remedy = await page.locator("ol.remedy li").all_inner_texts()
        assert any("paper" in step for step in remedy)
        assert await _fact(page, "occurrences") in ("1 occurrence", "2 occurrences")
        fix = await page.locator("p.fix-location").inner_text()
        assert fix.startswith("On site, by the merchant")
        await page.get_by_role("button", name="Acknowledge").click()

        await page.get_by_text("Acknowledged by").wait_for(timeout=10_000)
        state = page.locator("dl.facts dd .badge").first
        assert await state.inner_text() == "acknowledged"
        assert await page.get_by_role("button", name="Acknowledge").count() == 0

        # The menu offers the printer's playbook, not "Card payments failing".
        menu = page.locator("select[name=playbook]")
        assert await menu.input_value() == "printer_check"
        await page.get_by_role("button", name="Run playbook").click()

        run = page.locator("details.playbook-run")
        await run.wait_for(timeout=60_000)
        assert await run.locator("h3 .badge").inner_text() == "fault found"
        assert "cannot print" in await run.locator(".verdict").inner_text()
        finding = await run.locator("td.finding").first.inner_text()
        assert "no_paper" in finding and "not printed" in finding
        what_to_do = await run.locator("ol.remedy li").all_inner_texts()
        assert any("paper roll" in step for step in what_to_do)
        timeline = await page.locator("ol.timeline").inner_text()
        assert "Playbook by" not in timeline
        assert "succeeded" not in await page.locator("main").inner_text()

        # Assign and escalate from the page.
        await page.select_option("select[name=assignee]", "sam")
        await page.get_by_role("button", name="Assign").click()
        await page.get_by_text("Assigned to sam by user:sam").wait_for(timeout=10_000)
        assert await _fact(page, "assignee") == "sam"
        await page.select_option("select[name=to]", "on_site")
        await page.fill("textarea[name=reason]", "the roll holder is broken")
        await page.get_by_role("button", name="Escalate").click()
        await page.locator("p.escalated").wait_for(timeout=10_000)
        assert await page.locator("p.escalated").inner_text() == "Escalated to: technician visit"

        await _fits(env.browser, page, tmp_path, "incident-printer")


async def test_a_site_outage_is_one_fleet_incident_that_names_its_merchant(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    tag = tmp_path.name[-6:]
    site = f"S-{tag}"
    ids = [f"SITE{k}-{tag}" for k in range(4)]
    terminals = [_terminal(broker, terminal_id, "M1001", site) for terminal_id in ids]
    async with _running(broker, tmp_path, sqlite_url, terminals) as env:
        page = env.page
        for terminal_id in ids:
            env.run.terminals[terminal_id].inject(FaultName.HOST_DOWN)

        row = page.locator("tr", has_text="fleet: 4 terminals")
        await row.wait_for(timeout=60_000)
        assert await row.locator("td").nth(3).inner_text() == f"{site} / M1001"
        await row.get_by_role("link", name="fleet: 4 terminals").click()

        await page.get_by_role("heading", name="Who fixes it").wait_for()
        assert await _fact(page, "merchant") == "M1001"
        assert (await _fact(page, "occurrences")).endswith("over 4 terminals")
        fix = await page.locator("p.fix-location").inner_text()
        assert fix.startswith("On site, by the merchant"), fix
        assert "Remote fix: support can solve this" not in await page.locator("main").inner_text()

        # A playbook runs on every affected terminal; each one's finding is shown.
        assert await page.locator("select[name=playbook]").input_value() == (
            "card_payments_failing"
        )
        assert await page.locator("select[name=terminal]").input_value() == "*"
        await page.get_by_role("button", name="Run playbook").click()
        runs = page.locator("details.playbook-run")
        await runs.nth(3).wait_for(timeout=90_000)
        assert await runs.count() == 4
        # Four runs are one line each (playbook, terminal, outcome, verdict); a click
        # opens one to its findings.
        for index in range(4):
            run = runs.nth(index)
            assert await run.locator("h3 .badge").inner_text() == "fault found"
            assert "cannot reach the acquirer host" in await run.locator(".verdict").inner_text()
            assert not await run.locator("td.finding").first.is_visible()
            await run.locator("summary").click()
            findings = " ".join(await run.locator("td.finding").all_inner_texts())
            assert "no connection to the acquirer host" in findings
        await _fits(env.browser, page, tmp_path, "incident-fleet")
        fleet_url = page.url

        # The router is back: every terminal recovers and the fleet incident with them.
        for terminal_id in ids:
            env.run.terminals[terminal_id].clear(FaultName.HOST_DOWN)
        await page.goto(env.central.service.url + "/incidents")
        await page.get_by_text("No open incidents").wait_for(timeout=60_000)
        await page.get_by_role("link", name="Resolved", exact=True).click()
        resolved = page.locator("tr", has_text="fleet: 4 terminals")
        await resolved.wait_for(timeout=10_000)
        assert await page.get_by_text("fleet: 0 terminals").count() == 0

        await page.goto(fleet_url)
        timeline = await page.locator("ol.timeline").inner_text()
        assert "Resolved by itself: every terminal recovered" in timeline
        assert await _fact(page, "resolved") != ""
        assert "someone" not in timeline
