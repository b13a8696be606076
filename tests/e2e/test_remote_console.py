"""The remote diagnostics console end to end: the real central service, broker and agent.

Staff send commands through the API while the terminal is offline: one waits in the
broker's session and runs when the agent reconnects, one expires first and says so. A
reboot asked for during a sale is refused by the terminal, and the terminal page shows
the terminal's reason.
"""

from __future__ import annotations

import asyncio
import re
from html import unescape
from pathlib import Path
from typing import Any

import aiohttp

from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.store.accounts import Role, create_user
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import CentralUnderTest, start_central

PASSWORD = "receipt-roll-empty-again"


class Console:
    """The commands API of one terminal, as an automation client uses it."""

    def __init__(self, central: CentralUnderTest, terminal_id: str) -> None:
        self.central = central
        self.url = f"{central.service.url}/api/v1/terminals/{terminal_id}/commands"
        self.auth = {"Authorization": f"Bearer {central.token}"}

    async def send(self, name: str, **body: Any) -> dict[str, Any]:
        async with self.central.http.post(
            self.url, json={"name": name, **body}, headers=self.auth
        ) as response:
            record: dict[str, Any] = await response.json()
            assert response.status == 201, record
            return record

    async def get(self, command_id: str) -> dict[str, Any]:
        async with self.central.http.get(f"{self.url}/{command_id}", headers=self.auth) as r:
            record: dict[str, Any] = await r.json()
            return record

    async def wait_state(self, command_id: str, *states: str, within: float = 20) -> dict[str, Any]:
        latest: dict[str, Any] = {}

        async def reached() -> bool:
            latest.update(await self.get(command_id))
            return latest["state"] in states

        await async_wait_for(reached, timeout=within, description=f"{command_id} in {states}")
        return latest


async def _online(central: CentralUnderTest, terminal_id: str, online: bool) -> None:
    async def reached() -> bool:
        found = (await central.terminals()).get(terminal_id)
        return found is not None and found["online"] is online

    await async_wait_for(reached, timeout=20, description=f"{terminal_id} online={online}")


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


async def _terminal_page(central: CentralUnderTest, terminal_id: str) -> str:
    """The terminal page as a logged-in support person sees it."""
    async with central.service.engine.begin() as conn:
        await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
    base = central.service.url
    jar = aiohttp.CookieJar(unsafe=True)  # the server is an IP address
    async with aiohttp.ClientSession(base_url=base, cookie_jar=jar) as browser:
        async with browser.get("/login") as login:
            token = re.search(r'name="csrf_token" value="([^"]+)"', await login.text())
        assert token is not None
        form = {"csrf_token": token.group(1), "username": "sam", "password": PASSWORD}
        async with browser.post("/login", data=form) as answer:
            assert answer.status == 200
        async with browser.get(f"/terminals/{terminal_id}") as page:
            assert page.status == 200
            return _text(await page.text())


async def test_offline_commands_run_at_reconnect_or_expire_and_a_reboot_in_a_sale_is_refused(
    broker: PrivateBroker, tmp_path: Path
) -> None:
    terminal_id = f"CON-{tmp_path.name[-8:]}"
    creds = broker.provision_terminal(terminal_id)
    terminal = SimulatedTerminal("SN-CONSOLE", seed=11)
    db = f"sqlite+aiosqlite:///{tmp_path / 'central.db'}"
    async with (
        start_central(broker, tmp_path / "var", db) as central,
        serve_pty(terminal) as port,
    ):
        settings = AgentSettings(
            terminal_id=terminal_id,
            broker_url=broker.url,
            password=creds.password,
            serial_url=port,
            health_interval_s=30,
            fault_poll_s=5,
            state_dir=tmp_path / "agent",
        )
        console = Console(central, terminal_id)

        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(settings, stop))
        await _online(central, terminal_id, True)
        stop.set()
        await agent
        await _online(central, terminal_id, False)

        waiting = await console.send("print_test", reason="merchant: blank receipts")
        hurried = await console.send("host_ping", expires_in_s=5)
        assert waiting["state"] == hurried["state"] == "queued"
        expired = await console.wait_state(hurried["id"], "expired", within=15)
        assert "never came online" in expired["error"]

        stop = asyncio.Event()
        agent = asyncio.create_task(run_agent(settings, stop))
        try:
            done = await console.wait_state(waiting["id"], "done", "failed")
            assert done["state"] == "done", done
            assert done["output"]["passed"] is True and terminal.printed
            # Delivered late, the expired one is refused by the agent too: it stays expired.
            assert (await console.get(hurried["id"]))["state"] == "expired"

            terminal.begin_sale()
            reboot = await console.send("reboot", reason="frozen screen")
            refused = await console.wait_state(reboot["id"], "failed", "done")
            assert refused["state"] == "failed", refused
            assert "busy: a transaction is in progress" in refused["error"]
            assert terminal.reboots == 0
            page = await _terminal_page(central, terminal_id)
            assert "The terminal refused to reboot: busy: a transaction is in progress" in page
            assert "expired" in page and "Printer test" in page
        finally:
            stop.set()
            await agent
