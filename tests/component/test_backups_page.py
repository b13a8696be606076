"""The backups panel and the restore page through a real server over a migrated SQLite store.

The terminal's answers are fed to the real ``cmd/result`` handler (no broker here: the
commands stay queued until a central service publishes them, which is fine for pages).
"""

from __future__ import annotations

import re
from html import unescape

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import CommandResult, CommandStatus, utcnow
from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import PRINCIPAL_KEY
from posfleet.dashboard.backups_page import load_panel
from posfleet.dashboard.templating import make_environment
from posfleet.diagnostics.command_results_ingest import CommandResultHandler
from posfleet.diagnostics.config_backups import on_command_result
from posfleet.diagnostics.remote_commands import list_commands
from posfleet.store import write_transaction
from posfleet.store.accounts import Principal, Role, create_user
from posfleet.store.config_backups import replacement_links
from tests.component.firmware_rows import add_terminal

SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
Client = TestClient[web.Request, web.Application]


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


async def _answer_newest(engine: AsyncEngine, terminal_id: str, **output: object) -> None:
    async with engine.connect() as conn:
        (command, *_) = await list_commands(conn, terminal_id)
    result = CommandResult(id=command.id, status=CommandStatus.OK, output=output, ts=utcnow())
    async with write_transaction(engine) as conn:
        handler = CommandResultHandler(consumers=(on_command_result,))
        assert await handler(conn, terminal_id, result, now=utcnow()) is True


@pytest.fixture
async def sam(sqlite_engine: AsyncEngine) -> Client:
    await add_terminal(sqlite_engine, "B-OLD")
    await add_terminal(sqlite_engine, "B-NEW")
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
    client: Client = TestClient(TestServer(create_app(sqlite_engine, session_secret=SECRET)))
    await client.start_server()
    form = await (await client.get("/login")).text()
    data = {"csrf_token": _csrf(form), "username": "sam", "password": PASSWORD}
    assert (await client.post("/login", data=data, allow_redirects=False)).status == 303
    return client


async def _panel(engine: AsyncEngine, terminal_id: str) -> str:
    request = make_mocked_request("GET", f"/terminals/{terminal_id}")
    request[PRINCIPAL_KEY] = Principal("user", 1, "sam", Role.SUPPORT)
    async with engine.connect() as conn:
        context = await load_panel(conn, terminal_id, request)
    template = make_environment().get_template("panel_backups.html")
    return template.render(
        **context, terminal_id=terminal_id, csrf_token="t", user=request[PRINCIPAL_KEY]
    )


async def test_support_backs_up_previews_and_restores_onto_a_replacement(
    sam: Client, sqlite_engine: AsyncEngine
) -> None:
    engine = sqlite_engine
    assert "No backup of this terminal's configuration yet" in _text(await _panel(engine, "B-OLD"))
    # "Back up now" from the panel; its CSRF token is the session's (any page carries it).
    token = _csrf(await (await sam.get("/firmware")).text())
    answer = await sam.post(
        "/terminals/B-OLD/backups", data={"csrf_token": token}, allow_redirects=False
    )
    assert answer.status == 303 and answer.headers["Location"].endswith("#panel-backups")
    refused = await sam.post("/terminals/B-OLD/backups", data={}, allow_redirects=False)
    assert refused.status == 403  # no CSRF token
    await _answer_newest(
        engine,
        "B-OLD",
        params={"receipt.header": "Bakery Lenz", "terminal.serial": "SN-1"},
        withheld=["admin.pin"],
    )
    panel = _text(await _panel(engine, "B-OLD"))
    assert "Restore onto a replacement" in panel and "admin.pin" in panel
    backup_id = int(re.findall(r'data-backup-id="(\d+)"', await _panel(engine, "B-OLD"))[0])

    page = await sam.get(f"/backups/{backup_id}/restore", params={"target": "B-NEW"})
    html = await page.text()
    assert page.status == 200
    shown = _text(html)
    assert "receipt.header" in shown and "Bakery Lenz" in shown
    assert "secret: by key injection" in shown and "kept (the terminal's own)" in shown
    same = await sam.get(f"/backups/{backup_id}/restore", params={"target": "B-OLD"})
    assert same.status == 400 and "another terminal" in _text(await same.text())

    no_reason = await sam.post(
        f"/backups/{backup_id}/restore", data={"csrf_token": _csrf(html), "target": "B-NEW"}
    )
    assert no_reason.status == 400 and "Give a reason" in _text(await no_reason.text())
    sent = await sam.post(
        f"/backups/{backup_id}/restore",
        data={"csrf_token": _csrf(html), "target": "B-NEW", "reason": "reader dead, swapped"},
        allow_redirects=False,
    )
    assert sent.status == 303 and sent.headers["Location"].startswith("/terminals/B-NEW")
    assert "queued" in _text(await _panel(engine, "B-NEW"))
    await _answer_newest(engine, "B-NEW", applied=["receipt.header"], rejected={})
    new_panel = _text(await _panel(engine, "B-NEW"))
    assert "Replaces B-OLD" in new_panel and "done" in new_panel
    assert "Replaced by B-NEW" in _text(await _panel(engine, "B-OLD"))
    async with engine.connect() as conn:
        links = await replacement_links(conn, "B-OLD")
    assert links is not None and links.replaced_by == "B-NEW"
    await sam.close()
