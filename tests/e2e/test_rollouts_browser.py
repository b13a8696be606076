"""The firmware and rollouts pages in a real Chromium: create with the dry run, start with
a reason, the page following the rollout live, and no sideways scrolling at 800 and 1366 px.

The dashboard alone serves a seeded SQLite fleet on a free port (no broker: nothing here
needs an offer to go out).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.rollout_service import RolloutService
from posfleet.store.accounts import Role, create_user
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest
from tests.harness.browser import chromium

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
ZONES = ("Europe/Berlin", "Asia/Shanghai", "America/New_York")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@asynccontextmanager
async def _served(engine: AsyncEngine) -> AsyncIterator[str]:
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
async def dashboard(sqlite_engine: AsyncEngine) -> AsyncIterator[str]:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "olga", PASSWORD, Role.OPS)
    for index in range(40):
        await add_terminal(sqlite_engine, f"DEMO-{index:04d}", timezone=ZONES[index % 3])
    await add_terminal(sqlite_engine, "DEMO-A920", model="A920")
    await add_artifact(sqlite_engine, signed_manifest("5.3.0", models=("V400m", "P630")))
    async with _served(sqlite_engine) as url:
        yield url


async def _logged_in(browser: Browser, url: str, width: int) -> Page:
    context = await browser.new_context(viewport={"width": width, "height": 900})
    page = await context.new_page()
    await page.goto(url + "/login")
    await page.fill("input[name=username]", "olga")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.get_by_role("heading", name="Fleet").wait_for()
    return page


async def _fits(page: Page, name: str, width: int, shots: Path) -> None:
    sizes = await page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert int(sizes[0]) <= int(sizes[1]), f"{name} at {width} px scrolls sideways: {sizes}"
    shot = shots / f"{name}-{width}.png"
    await page.screenshot(path=shot, full_page=True)
    assert shot.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize("width", [800, 1366])
async def test_create_preview_start_and_watch_a_rollout_in_the_browser(
    dashboard: str, sqlite_engine: AsyncEngine, tmp_path: Path, width: int
) -> None:
    async with chromium() as browser:
        page = await _logged_in(browser, dashboard, width)
        await page.get_by_role("link", name="Firmware").click()
        await page.get_by_role("heading", name="Firmware and rollouts").wait_for()
        assert await page.locator("tr[data-artifact-id]").count() == 1
        await _fits(page, "firmware", width, tmp_path)

        await page.get_by_role("link", name="Roll out").click()
        await page.get_by_role("heading", name="New rollout").wait_for()
        await _fits(page, "new-rollout", width, tmp_path)
        await page.get_by_label("Name").fill("pos-os 5.3.0, all shops")
        await page.get_by_label("Waves", exact=True).fill("10%,50%,100%")
        await page.get_by_label("Reason", exact=True).fill("CVE-2026-0042")
        await page.get_by_role("button", name="Create and preview").click()

        await page.get_by_role("heading", name="Dry run: 40 terminals would be updated").wait_for()
        main = page.locator("main")
        assert "Wave 1 (10 %): 4 terminals" in await main.inner_text()
        assert "not built for its model" in await main.inner_text()
        await _fits(page, "rollout-preview", width, tmp_path)

        await page.get_by_label("Reason code").select_option("security_fix")
        await page.get_by_label("Reason", exact=True).fill("approved in the change board")
        await page.get_by_role("button", name="Start").click()
        live = page.locator("#live-section")
        await live.locator(".badge", has_text="running").wait_for()
        assert await live.locator("article.wave progress").count() == 3
        await _fits(page, "rollout-running", width, tmp_path)

        # Someone else pauses it: this page follows without a reload, and what was
        # typed in the reason box stays.
        await page.get_by_label("Reason", exact=True).fill("half-typed reason")
        rollout_id = int(page.url.rsplit("/", 1)[1])
        support = RolloutService(sqlite_engine, actor="user:sam", role=Role.SUPPORT)
        brake = {"reason_code": "other", "reason": "Saturday rush"}
        await support.command(rollout_id, "pause", brake)
        await live.locator(".badge", has_text="paused").wait_for(timeout=20_000)
        assert "Paused: paused by user:sam: Saturday rush" in await live.inner_text()
        await live.get_by_role("button", name="Resume").wait_for()
        assert await page.get_by_label("Reason", exact=True).input_value() == "half-typed reason"
        assert "Updated" in await page.locator("#refresh-status").inner_text()
