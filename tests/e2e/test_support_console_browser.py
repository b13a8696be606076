"""A merchant calls: "my card reader doesn't work". The whole support path in a real browser.

Against the real broker, the central service and a simulated terminal whose reader fails:
a support user finds the merchant by a part of its name, opens the sick terminal, reads
its health history, runs a card-reader test and sees the result arrive without a reload,
opens a case from the terminal, links the reader's incident, adds a note, sets a
follow-up, acknowledges and resolves the incident and closes the case with the merchant's
confirmation. Each step leaves a screenshot under ``test-artifacts/support-console/``.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.async_api import Page

from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet import FleetOptions, FleetRun, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.browser import chromium
from tests.harness.central_service import start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(os.environ.get("POSFLEET_TEST_ARTIFACTS", "test-artifacts")) / "support-console"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class Steps:
    """Numbered full-page screenshots of one browser page, kept after the test."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0
        folder.mkdir(parents=True, exist_ok=True)

    async def shot(self, name: str) -> None:
        """Save the page as it is now as ``NN-name.png``."""
        self.count += 1
        path = self.folder / f"{self.count:02d}-{name}.png"
        await self.page.screenshot(path=path, full_page=True)
        assert path.read_bytes()[:8] == PNG_SIGNATURE


async def test_support_follows_a_card_reader_complaint_from_the_call_to_the_closed_case(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    tag = tmp_path.name[-6:].replace("_", "")
    terminal_id = f"SUP-{tag}"
    merchant_id = f"M-{tag}"
    neighbour = FleetTerminal(
        terminal_id=f"SUP-{tag}-2",
        password=broker.provision_terminal(f"SUP-{tag}-2").password,
        merchant_id=f"N-{tag}",
        merchant_name="Harbour Bakery",
        site_id=f"S-{tag}-2",
        seed=3,
    )
    sick = FleetTerminal(
        terminal_id=terminal_id,
        password=broker.provision_terminal(terminal_id).password,
        merchant_id=merchant_id,
        merchant_name="Lotus Garden 莲花餐厅",
        site_id=f"S-{tag}",
        site_name="Main Street",
        seed=7,
    )
    stop = asyncio.Event()
    run = FleetRun()
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "f")
    async with start_central(
        broker, tmp_path / "c", sqlite_url, rollup_fold_interval_s=1
    ) as central:
        async with central.service.engine.begin() as conn:
            await create_user(conn, "mei", PASSWORD, Role.SUPPORT)
        fleet = asyncio.create_task(run_fleet([sick, neighbour], options, stop, run=run))
        try:
            await async_wait_for(
                lambda: terminal_id in run.terminals, 20, description="the terminal started"
            )
            # The reader fails three times in a row: the rule opens an incident.
            for _ in range(3):
                run.terminals[terminal_id].inject(FaultName.READER_DEFECTIVE)
            async with chromium() as browser:
                page = await browser.new_page(viewport={"width": 1366, "height": 900})
                steps = Steps(page, ARTIFACTS)
                await _log_in(page, central.service.url)
                await steps.shot("logged-in")

                # Find the merchant by a part of its name, from the header's search box.
                await page.locator("header form.search input[name=q]").fill("莲花")
                await page.locator("header form.search button").click()
                found = page.locator("tr", has_text=terminal_id)
                await found.wait_for(timeout=20_000)
                assert await page.locator("tr", has_text="Harbour Bakery").count() == 0
                assert "Lotus Garden" in await page.locator("main").inner_text()
                await steps.shot("search")
                await found.get_by_role("link", name=terminal_id).click()

                # The terminal page: its health history, as charts and as a table.
                await page.locator("#panel-charts canvas").first.wait_for(timeout=30_000)
                table = page.locator("#panel-charts table tbody tr")
                assert await table.count() >= 1
                incident = page.locator("#panel-incidents a", has_text="Card reads failing")
                await incident.first.wait_for(timeout=60_000)
                await steps.shot("terminal")

                # A card-reader test; its result arrives on the page without a reload.
                await page.locator("#panel-commands button[data-command=card_reader_test]").click()
                history = page.locator("#panel-commands li.command").first
                await history.wait_for(timeout=10_000)
                await page.evaluate("window.__sameDocument = true")
                await page.wait_for_function(
                    "() => { const c = document.querySelector('#panel-commands li.command');"
                    " return c && ['done', 'failed'].includes(c.dataset.state); }",
                    timeout=30_000,
                )
                assert await page.evaluate("window.__sameDocument === true")
                result = await history.inner_text()
                assert "fault" in result, result
                await steps.shot("card-reader-test")

                # Open a case from the terminal: merchant and terminal are filled in.
                await page.locator("#open-case-link").click()
                assert await page.locator("#case-merchant").input_value() == merchant_id
                assert terminal_id in await page.locator("#case-terminals").input_value()
                await page.fill("#case-complaint", "Cards are refused at the till since noon")
                await steps.shot("case-new")
                await page.locator("#case-open-submit").click()
                await page.locator("#case-complaint-text").wait_for(timeout=10_000)
                case_url = page.url

                # Link the reader's incident, note the call, set a follow-up.
                link = page.locator("button", has_text="Link incident #")
                await link.first.click()
                await page.locator("#case-timeline").wait_for()
                await page.locator("a[href^='/incidents/']").first.wait_for(timeout=10_000)
                await page.fill("#case-note-text", "Asked the merchant to clean the reader")
                await page.locator("#case-note-submit").click()
                await page.get_by_text("Asked the merchant to clean the reader").wait_for()
                tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
                await page.fill("#case-follow-up-date", tomorrow)
                await page.locator("#case-follow-up-submit").click()
                await page.wait_for_function(
                    f"() => document.querySelector('#case-follow-up-now')"
                    f".textContent.includes('{tomorrow}')",
                    timeout=10_000,
                )
                await steps.shot("case-linked")

                # Acknowledge and resolve the incident from its own page.
                await page.locator("main a[href^='/incidents/']").first.click()
                await page.get_by_role("button", name="Acknowledge").click()
                await page.get_by_text("Acknowledged by").wait_for(timeout=10_000)
                await page.fill("textarea[name=resolution]", "reader cleaned by the merchant")
                await page.get_by_role("button", name="Resolve").click()
                await page.locator("dl.facts dd .badge", has_text="resolved").wait_for(
                    timeout=10_000
                )
                await steps.shot("incident-resolved")

                # Close the case with the merchant's confirmation.
                await page.goto(case_url)
                await page.fill("#case-close-confirmation", "Mr Li called back: cards work")
                await page.locator("#case-close-submit").click()
                await page.locator("#case-confirmation").wait_for(timeout=10_000)
                assert (await page.locator("#case-state").inner_text()).strip() == "Closed"
                await steps.shot("case-closed")
                assert steps.count == 8
        finally:
            stop.set()
            await fleet


async def _log_in(page: Page, base_url: str) -> None:
    await page.goto(base_url + "/")
    assert "/login" in page.url
    await page.fill("input[name=username]", "mei")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.locator("header form.search").wait_for(timeout=20_000)
