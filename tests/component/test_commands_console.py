"""The remote diagnostics console: the terminal page's panel and the commands API.

A real server over a migrated SQLite store; the broker is a fake publisher, and the
terminal's answers go through the real ``cmd/result`` handler.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import CommandResult, CommandStatus, utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import COMMANDS_KEY
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.store import write_transaction
from posfleet.store.accounts import Role, create_api_token, create_user, list_audit
from tests.component.firmware_rows import add_terminal

SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
Client = TestClient[web.Request, web.Application]
REFUSAL = "terminal refused reboot: result 0xF2 (busy: a transaction is in progress)"


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field"
    return match.group(1)


@pytest.fixture
async def server(sqlite_engine: AsyncEngine) -> AsyncIterator[tuple[TestServer, MemoryPublisher]]:
    await add_terminal(sqlite_engine, "T-1")
    app = create_app(sqlite_engine, session_secret=SECRET)
    broker = MemoryPublisher()
    app[COMMANDS_KEY] = broker
    test_server = TestServer(app)
    await test_server.start_server()
    try:
        yield test_server, broker
    finally:
        await test_server.close()


async def _login(engine: AsyncEngine, test_server: TestServer, name: str, role: Role) -> Client:
    async with engine.begin() as conn:
        await create_user(conn, name, PASSWORD, role)
    client = TestClient(test_server)
    await client.start_server()
    form = await (await client.get("/login")).text()
    data = {"csrf_token": _csrf(form), "username": name, "password": PASSWORD}
    assert (await client.post("/login", data=data, allow_redirects=False)).status == 303
    return client


async def _answer(engine: AsyncEngine, command_id: str, status: CommandStatus, **kw: Any) -> None:
    result = CommandResult(id=command_id, status=status, ts=utcnow(), **kw)
    async with write_transaction(engine) as conn:
        assert await CommandResultHandler()(conn, "T-1", result, now=utcnow()) is True


async def test_support_runs_diagnostics_from_the_terminal_page_and_reads_the_results(
    sqlite_engine: AsyncEngine, server: tuple[TestServer, MemoryPublisher]
) -> None:
    test_server, broker = server
    client = await _login(sqlite_engine, test_server, "sam", Role.SUPPORT)
    try:
        page = await (await client.get("/terminals/T-1")).text()
        assert 'id="panel-commands"' in page and "Card reader test" in page
        token = _csrf(page)

        posted = await client.post(
            "/terminals/T-1/commands",
            data={"csrf_token": token, "name": "card_reader_test"},
            allow_redirects=False,
        )
        assert posted.status == 303
        assert posted.headers["Location"] == "/terminals/T-1#panel-commands"
        reader = broker.commands()[-1].id
        shown = _text(await (await client.get("/terminals/T-1")).text())
        assert "sent: waiting for the terminal's answer" in shown

        checks = [
            {"name": "chip", "passed": True, "detail": "0/40 reads failed"},
            {"name": "contactless", "passed": False, "detail": "9/30 reads failed"},
        ]
        output = {
            "test": "card_reader",
            "passed": False,
            "detail": "reader faulty",
            "checks": checks,
        }
        await _answer(sqlite_engine, reader, CommandStatus.FAILED, output=output, error="x")
        shown = _text(await (await client.get("/terminals/T-1")).text())
        assert "Chip ok 0/40 reads failed" in shown
        assert "Contactless fault 9/30 reads failed" in shown

        # A reboot needs the confirmation and a reason; the terminal's refusal is shown.
        refused = await client.post(
            "/terminals/T-1/commands",
            data={"csrf_token": token, "name": "reboot", "reason": "frozen"},
            allow_redirects=False,
        )
        assert refused.status == 400
        assert "not in the middle of a sale" in _text(await refused.text())
        reboot_form = {"csrf_token": token, "name": "reboot", "reason": "screen frozen"}
        reboot_form["confirm"] = "yes"
        posted = await client.post("/terminals/T-1/commands", data=reboot_form)
        assert posted.status == 200
        reboot = broker.commands()[-1].id
        await _answer(sqlite_engine, reboot, CommandStatus.FAILED, error=REFUSAL)
        shown = _text(await (await client.get("/terminals/T-1")).text())
        assert "The terminal refused to reboot: busy: a transaction is in progress" in shown
        async with sqlite_engine.connect() as conn:
            audit = await list_audit(conn)
        assert (audit[0].actor, audit[0].reason) == ("user:sam", "screen frozen")

        await client.post(
            "/terminals/T-1/commands", data={"csrf_token": token, "name": "collect_logs"}
        )
        logs = broker.commands()[-1]
        assert set(logs.args) == {"from", "to"}
        text = {"text": "boot ok\nsale approved\n", "lines": 2, "masked_card_numbers": 0}
        await _answer(sqlite_engine, logs.id, CommandStatus.OK, output=text)
        page = await (await client.get("/terminals/T-1")).text()
        link = re.search(r'href="(/terminals/T-1/commands/[^"]+/logs)"', page)
        assert link, "no download link for the logs"
        download = await client.get(link.group(1))
        assert download.status == 200 and await download.text() == "boot ok\nsale approved\n"
        assert "attachment" in download.headers["Content-Disposition"]
    finally:
        await client.close()


async def test_the_api_issues_lists_and_shows_commands_and_refuses_bad_ones(
    sqlite_engine: AsyncEngine, server: tuple[TestServer, MemoryPublisher]
) -> None:
    test_server, _broker = server
    async with sqlite_engine.begin() as conn:
        support = await create_api_token(conn, "bot", Role.SUPPORT)
        viewer = await create_api_token(conn, "wall", Role.VIEWER)
    async with TestClient(test_server) as client:
        auth = {"Authorization": f"Bearer {support}"}
        url = "/api/v1/terminals/T-1/commands"
        body = {"name": "host_ping", "reason": "merchant: no connection", "expires_in_s": 600}
        created = await client.post(url, json=body, headers=auth)
        assert created.status == 201, await created.text()
        record = await created.json()
        assert record["state"] == "sent" and record["issued_by"] == "token:bot"
        one = await client.get(f"{url}/{record['id']}", headers=auth)
        assert (await one.json())["reason"] == "merchant: no connection"
        listed = await (await client.get(url, headers=auth, params={"limit": "5"})).json()
        assert [item["id"] for item in listed["items"]] == [record["id"]]

        for bad, field in (
            ({"name": "format_disk"}, "name"),
            ({"name": "reboot"}, "reason"),
            ({"name": "host_ping", "expires_in_s": 1}, "expires_in_s"),
            ({"name": "host_ping", "colour": "red"}, "colour"),
        ):
            answer = await client.post(url, json=bad, headers=auth)
            assert answer.status == 400, (bad, await answer.text())
            assert field in await answer.text()
        missing = await client.post("/api/v1/terminals/NOPE/commands", json=body, headers=auth)
        assert missing.status == 404
        assert (await client.get(f"{url}/cmd-none", headers=auth)).status == 404
        as_viewer = {"Authorization": f"Bearer {viewer}"}
        assert (await client.post(url, json=body, headers=as_viewer)).status == 403
