"""The incident pages in a real browser: a printer runs out of paper, support takes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet import FleetOptions, FleetRun, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.browser import chromium
from tests.harness.central_service import start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


async def test_support_user_sees_a_printer_incident_and_acknowledges_it(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    terminal_id = f"INC-{tmp_path.name[-8:]}"
    terminal = FleetTerminal(
        terminal_id=terminal_id,
        password=broker.provision_terminal(terminal_id).password,
        merchant_id="M-88",
        site_id="S-3",
        seed=7,
    )
    stop = asyncio.Event()
    run = FleetRun()
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "f")
    async with start_central(broker, tmp_path / "c", sqlite_url) as central:
        async with central.service.engine.begin() as conn:
            await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
        fleet = asyncio.create_task(run_fleet([terminal], options, stop, run=run))
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
                    lambda: terminal_id in run.terminals,
                    15,
                    description="the simulated terminal started",
                )
                run.terminals[terminal_id].inject(FaultName.PAPER_OUT)

                # The list refreshes itself: the printer incident appears without a reload.
                row = page.locator("tr", has_text=terminal_id)
                await row.wait_for(timeout=30_000)
                assert await row.get_by_text("open", exact=True).count() == 1
                await row.get_by_role("link", name=terminal_id).click()

                await page.get_by_role("heading", name="What to do").wait_for()
                remedy = await page.locator("ol.remedy li").all_inner_texts()
                assert any("paper" in step for step in remedy)
                await page.get_by_role("button", name="Acknowledge").click()

                await page.get_by_text("Acknowledged by").wait_for(timeout=10_000)
                state = page.locator("dl.facts dd .badge").first
                assert await state.inner_text() == "acknowledged"
                assert await page.get_by_role("button", name="Acknowledge").count() == 0
        finally:
            stop.set()
            await fleet
