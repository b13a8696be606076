# ruff: noqa: RUF001 (Chinese text is written with full-width punctuation)
"""A Chinese helpdesk in a real browser, then the same pages in English.

Against the real broker, the central service and simulated terminals (a printer out of
paper, a failing card reader, a lost acquirer host) plus one terminal that is offline: a
support user whose browser asks for ``zh-CN`` lands on the overview in Chinese, finds a
merchant, runs the printer and card-reader tests, reads each incident's probable cause and
remedy in Chinese with its link to the knowledge base, and searches the knowledge base for
"打印机不出纸". Then the account is switched to English and every one of those pages is
English. Each step leaves a screenshot under ``test-artifacts/languages/``.

The same screenshots illustrate the user guides (docs/user-guide.md and
docs/user-guide.zh-CN.md): with ``POSFLEET_UPDATE_GUIDE_IMAGES=1`` the test also writes
them to ``docs/images/user-guide/<name>.<language>.png`` (:data:`GUIDE_SHOTS`).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Page
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import Inventory, State, utcnow
from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet import FleetOptions, FleetRun, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.store import apply_inventory, apply_state
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.browser import chromium
from tests.harness.central_service import CentralUnderTest, start_central

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery staple"
ARTIFACTS = Path(os.environ.get("POSFLEET_TEST_ARTIFACTS", "test-artifacts")) / "languages"
GUIDE_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images" / "user-guide"
UPDATE_GUIDE = os.environ.get("POSFLEET_UPDATE_GUIDE_IMAGES") == "1"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LANGUAGES = ("zh-CN", "en")
"""The guides' languages, as the image names spell them."""

GUIDE_SHOTS = (
    "overview",
    "search",
    "printer-terminal",
    "printer-incident",
    "kb-paper",
    "reader-terminal",
    "reader-incident",
    "host-incident",
    "offline-list",
    "kb-offline",
    "kb-update",
    "account",
)
"""The screenshots the user guides show, taken once per language."""


class Steps:
    """Numbered screenshots of one page; the guide's ones also under docs/images."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.count = 0
        self.language = LANGUAGES[0]
        self.taken: set[str] = set()
        folder.mkdir(parents=True, exist_ok=True)

    async def shot(self, name: str) -> None:
        """Save the visible page as ``NN-<language>-name.png`` (and the guide's copy)."""
        self.count += 1
        path = self.folder / f"{self.count:02d}-{self.language}-{name}.png"
        image = await self.page.screenshot(path=path)
        assert image[:8] == PNG_SIGNATURE
        if name in GUIDE_SHOTS:
            self.taken.add(f"{name}.{self.language}.png")
            if UPDATE_GUIDE:
                GUIDE_IMAGES.mkdir(parents=True, exist_ok=True)
                (GUIDE_IMAGES / f"{name}.{self.language}.png").write_bytes(image)


@dataclass(frozen=True)
class Shop:
    """The seeded terminals, one per common call."""

    printer: str
    reader: str
    host: str
    offline: str


@dataclass(frozen=True)
class Texts:
    """What each page says in one language."""

    overview: str
    open_incidents: str
    remote_diagnostics: str
    printer_title: str
    printer_cause: str
    printer_step: str
    paper_entry: str
    how_to_fix: str
    reader_title: str
    reader_entry: str
    host_title: str
    host_entry: str
    offline: str
    offline_entry: str
    update_query: str
    update_entry: str
    knowledge_base: str
    language: str


CHINESE = Texts(
    overview="概览",
    open_incidents="未解决的故障",
    remote_diagnostics="远程诊断",
    printer_title="打印机无法打印",
    printer_cause="打印机报告无法打印：纸卷用完、卡纸、纸仓盖打开或机芯故障。",
    printer_step="打开纸仓盖，重新装好纸卷（打印面朝外）",
    paper_entry="打印机不打印或不出纸",
    how_to_fix="处理方法：打印机不打印或不出纸",
    reader_title="读卡失败",
    reader_entry="读不了卡或刷卡被拒",
    host_title="无法连接收单主机",
    host_entry="连不上支付主机",
    offline="离线",
    offline_entry="终端离线：收不到上报",
    update_query="更新卡住",
    update_entry="固件更新没有装上",
    knowledge_base="知识库",
    language="语言",
)
ENGLISH = Texts(
    overview="Overview",
    open_incidents="Open incidents",
    remote_diagnostics="Remote diagnostics",
    printer_title="Printer cannot print",
    printer_cause="The printer reports it cannot print",
    printer_step="Open the cover and reload the paper roll (printed side facing out)",
    paper_entry="Printer does not print or no paper comes out",
    how_to_fix="How to fix: Printer does not print or no paper comes out",
    reader_title="Card reads failing",
    reader_entry="Card reads fail or cards are declined at the reader",
    host_title="Acquirer host unreachable",
    host_entry="No connection to the payment host",
    offline="offline",
    offline_entry="Terminal offline: no reports arrive",
    update_query="update stuck",
    update_entry="Firmware update did not arrive",
    knowledge_base="Knowledge base",
    language="Language",
)


async def test_a_chinese_browser_reads_every_page_in_chinese_and_english_after_the_switch(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    tag = tmp_path.name[-6:].replace("_", "")
    shop = Shop(f"PRN-{tag}", f"RDR-{tag}", f"HST-{tag}", f"OFF-{tag}")
    names = {
        shop.printer: ("老北京饺子馆 Old Beijing", "王府井店"),
        shop.reader: ("莲花餐厅 Lotus Garden", "南京路店"),
        shop.host: ("海港面包房 Harbour Bakery", "外滩店"),
    }
    fleet_terminals = [
        FleetTerminal(
            terminal_id=terminal_id,
            password=broker.provision_terminal(terminal_id).password,
            merchant_id=f"M{n}-{tag}",
            merchant_name=merchant,
            site_id=f"S-{terminal_id}",
            site_name=site,
            seed=n,
        )
        for n, (terminal_id, (merchant, site)) in enumerate(names.items(), 1)
    ]
    stop = asyncio.Event()
    run = FleetRun()
    options = FleetOptions(broker_url=broker.url, health_interval_s=1, state_dir=tmp_path / "f")
    async with start_central(broker, tmp_path / "c", sqlite_url) as central:
        async with central.service.engine.begin() as conn:
            await create_user(conn, "lin", PASSWORD, Role.SUPPORT)
            await _seed_offline_terminal(conn, shop.offline)
        fleet = asyncio.create_task(run_fleet(fleet_terminals, options, stop, run=run))
        try:
            async with chromium() as browser:
                context = await browser.new_context(
                    locale="zh-CN", viewport={"width": 1100, "height": 720}
                )
                page = await context.new_page()
                await _log_in(page, central.service.url)
                await async_wait_for(
                    lambda: all(t.terminal_id in run.terminals for t in fleet_terminals),
                    20,
                    description="the simulated terminals started",
                )
                run.terminals[shop.printer].inject(FaultName.PAPER_OUT)
                run.terminals[shop.host].inject(FaultName.HOST_DOWN)
                for _ in range(3):
                    run.terminals[shop.reader].inject(FaultName.READER_DEFECTIVE)
                incidents = await _incidents_open(central, shop)
                await page.reload()
                steps = Steps(page, ARTIFACTS)
                desk = Helpdesk(page, steps, central.service.url, shop, incidents)
                await desk.walk(CHINESE, run_tests=True)
                await _switch_to_english(page, steps)
                await page.goto(central.service.url + "/overview")
                await desk.walk(ENGLISH, run_tests=False)
                assert not desk.missing, "\n".join(desk.missing)
                assert steps.taken == {
                    f"{name}.{language}.png" for name in GUIDE_SHOTS for language in LANGUAGES
                }
        finally:
            stop.set()
            await fleet


async def _seed_offline_terminal(conn: AsyncConnection, terminal_id: str) -> None:
    """A terminal known to the centre whose last message was its LWT: offline."""
    now = utcnow()
    state = State(online=False, agent_version="1.4.0", boot_id="b1", ts=now)
    inventory = Inventory(
        model="V400m",
        serial=f"SN{terminal_id}",
        firmware_version="5.2.1",
        agent_version="1.4.0",
        merchant_id=f"M9-{terminal_id[4:]}",
        merchant_name="川味小馆 Sichuan Kitchen",
        site_id=f"S-{terminal_id}",
        ts=now,
    )
    await apply_inventory(conn, terminal_id, inventory, now=now)
    await apply_state(conn, terminal_id, state, now=now)


async def _incidents_open(central: CentralUnderTest, shop: Shop) -> dict[str, int]:
    """The open incident of each faulty terminal, by terminal id, once all three are open."""
    found: dict[str, int] = {}
    wanted = {
        shop.printer: "printer.not_ready",
        shop.reader: "card_reader.errors",
        shop.host: "network.host_unreachable",
    }

    async def all_open() -> bool:
        body = await central.get_json("/api/v1/incidents", state="open", limit="100")
        for item in body["items"]:
            if wanted.get(item.get("terminal_id")) == item["rule_id"]:
                found[item["terminal_id"]] = int(item["id"])
        return len(found) == len(wanted)

    await async_wait_for(all_open, 30, description="the three incidents opened")
    return found


@dataclass
class Helpdesk:
    """One support user's browser page on the central service, and the seeded shop."""

    page: Page
    steps: Steps
    base: str
    shop: Shop
    incidents: dict[str, int]
    missing: list[str] = field(default_factory=list)
    """Texts a page should show but did not: the test fails on them once every page is seen."""

    async def expect(self, text: str, selector: str) -> None:
        """Note it when the element at ``selector`` does not contain ``text``."""
        shown = await self.page.locator(selector).first.inner_text()
        if text not in shown:
            path = self.page.url.removeprefix(self.base)
            self.missing.append(f"{path} {selector}: {text!r} not in {shown[:120]!r}")

    async def walk(self, texts: Texts, *, run_tests: bool) -> None:
        """The five calls' pages in one language; the remote tests only the first time."""
        page, shop, base = self.page, self.shop, self.base

        # The overview: the landing page after login.
        await page.locator("#overview-incidents").wait_for(timeout=20_000)
        assert (await page.locator("main h1").inner_text()).strip() == texts.overview
        assert texts.open_incidents in await page.locator("#overview-incidents-title").inner_text()
        lang = "zh-CN" if texts is CHINESE else "en"
        assert await page.locator("html").get_attribute("lang") == lang
        await self.steps.shot("overview")

        # The merchant calls: find them by a part of their name.
        await page.locator("header form.search input[name=q]").fill("饺子")
        await page.locator("header form.search button").click()
        found = page.locator(f"tr[data-terminal-id={shop.printer}]")
        await found.wait_for(timeout=10_000)
        assert await page.locator(f"tr[data-terminal-id={shop.reader}]").count() == 0
        await self.steps.shot("search")
        await found.get_by_role("link", name=shop.printer).click()

        # Paper: the terminal page, the printer test, the incident, the knowledge base.
        await self.terminal(texts, "print_test", "printer-terminal", run_test=run_tests)
        await self.incident(texts, shop.printer, "printer-incident")
        await self.expect(texts.printer_title, "main h1")
        await self.expect(texts.printer_cause, "main")
        await self.expect(texts.printer_step, "ol.remedy")
        await page.locator("p.knowledge-link a", has_text=texts.how_to_fix).click()
        await page.wait_for_url("**/knowledge/printer.not_ready")
        await self.expect(texts.paper_entry, "main h1")
        await self.search_knowledge("打印机不出纸", "printer.not_ready", "kb-paper")
        first = await page.locator("#knowledge-results li").first.get_attribute("data-entry-id")
        assert first == "printer.not_ready", first
        await self.expect(texts.paper_entry, "#knowledge-results li")

        # Card reader: the card-reader test and the incident.
        await page.goto(f"{base}/terminals/{shop.reader}")
        await self.terminal(texts, "card_reader_test", "reader-terminal", run_test=run_tests)
        await self.incident(texts, shop.reader, "reader-incident")
        await self.expect(texts.reader_title, "main h1")
        await self.expect(texts.reader_entry, "p.knowledge-link")

        # No connection to the host.
        await self.incident(texts, shop.host, "host-incident")
        await self.expect(texts.host_title, "main h1")
        await self.expect(texts.host_entry, "p.knowledge-link")

        # Terminal offline: the fleet list's offline terminals, and what to ask the merchant.
        await page.goto(f"{base}/?online=false")
        offline_row = page.locator(f"tr[data-terminal-id={shop.offline}]")
        await offline_row.wait_for(timeout=10_000)
        await self.expect(texts.offline, f"tr[data-terminal-id={shop.offline}]")
        assert await page.locator(f"tr[data-terminal-id={shop.printer}]").count() == 0
        await self.steps.shot("offline-list")
        await page.goto(f"{base}/knowledge/terminal.offline")
        await self.expect(texts.offline_entry, "main h1")
        await self.steps.shot("kb-offline")

        # Update stuck: the knowledge base by the merchant's words.
        await self.search_knowledge(texts.update_query, "firmware.mismatch", "kb-update")
        await self.expect(texts.update_entry, "#knowledge-results")
        await self.expect(texts.knowledge_base, "header nav")
        await self.expect(texts.overview, "header nav")

        # The account page, where the language is chosen.
        await page.goto(f"{base}/account")
        assert texts.language in await page.locator("#language-heading").inner_text()
        await self.steps.shot("account")

    async def terminal(self, texts: Texts, command: str, shot: str, *, run_test: bool) -> None:
        """The terminal page; a remote test's result arrives without a reload."""
        page = self.page
        await page.locator("#panel-commands").wait_for(timeout=10_000)
        assert texts.remote_diagnostics in await page.locator("#panel-commands h2").inner_text()
        if run_test:
            await page.locator(f"#panel-commands button[data-command={command}]").click()
            await page.wait_for_function(
                "() => { const c = document.querySelector('#panel-commands li.command');"
                " return c && ['done', 'failed'].includes(c.dataset.state); }",
                timeout=20_000,
            )
        await _scroll_to(page, "#panel-commands li.command", "center")
        await self.steps.shot(shot)

    async def incident(self, texts: Texts, terminal_id: str, shot: str) -> None:
        """The terminal's incident page, with its probable cause, remedy and entry link."""
        page = self.page
        await page.goto(f"{self.base}/incidents/{self.incidents[terminal_id]}")
        heading = await page.locator("main section h2").first.inner_text()
        assert heading.strip() == ("可能原因" if texts is CHINESE else "Probable cause")
        await page.locator("p.knowledge-link").first.wait_for(timeout=5_000)
        await _scroll_to(page, "main section", "start")
        await self.steps.shot(shot)

    async def search_knowledge(self, query: str, entry_id: str, shot: str) -> None:
        """Search the knowledge base for the merchant's words; ``entry_id`` is near the top."""
        page = self.page
        await page.goto(f"{self.base}/knowledge")
        await page.fill("#knowledge-q", query)
        await page.locator("#knowledge-search button").click()
        results = page.locator("#knowledge-results li")
        await results.first.wait_for(timeout=10_000)
        ids = [await r.get_attribute("data-entry-id") for r in await results.all()]
        assert entry_id in ids[:2], ids
        await self.steps.shot(shot)


async def _scroll_to(page: Page, selector: str, block: str) -> None:
    """Scroll the first element at ``selector`` to the ``block`` of the window."""
    await page.locator(selector).first.evaluate(
        "(element, block) => element.scrollIntoView({block})", block
    )


async def _switch_to_english(page: Page, steps: Steps) -> None:
    """Choose English on the account page; the page answers in English at once."""
    await page.select_option("#f-locale", "en")
    await page.locator("main form.admin-form button[type=submit]").click()
    await page.locator("#language-heading", has_text="Language").wait_for(timeout=10_000)
    steps.language = "en"
    await steps.shot("switched")


async def _log_in(page: Page, base_url: str) -> None:
    await page.goto(base_url + "/login")
    await page.fill("input[name=username]", "lin")
    await page.fill("input[name=password]", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url("**/overview", timeout=20_000)
