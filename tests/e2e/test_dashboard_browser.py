"""The fleet page in a real browser: log in, see the fleet, watch it change without reloading."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.simulator.fleet import FleetOptions, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker
from tests.harness.browser import chromium
from tests.harness.central_service import start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"


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
