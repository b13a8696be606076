"""The knowledge base through a real server over a migrated SQLite store: searching in both
languages, a support lead writing and editing an article (history kept), support refused,
bad input refused on the form and as problem+json, and the incident page's link."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from html import unescape
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import utcnow
from posfleet.dashboard import create_app
from posfleet.store.accounts import Role, create_api_token, create_user, list_audit
from posfleet.store.incidents import IncidentSpec, open_incident

SECRET = bytes(range(32))
PASSWORD = "paper-jam-at-till-3"
Client = TestClient[web.Request, web.Application]
ZH = {"Accept-Language": "zh-CN,zh;q=0.9"}


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def _text(html: str) -> str:
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


@dataclass
class Desk:
    client: Client
    tokens: dict[Role, str]

    async def login(self, username: str) -> None:
        self.client.session.cookie_jar.clear()
        form = await (await self.client.get("/login")).text()
        data = {"csrf_token": _csrf(form), "username": username, "password": PASSWORD}
        assert (await self.client.post("/login", data=data, allow_redirects=False)).status == 303

    def bearer(self, role: Role, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **headers}

    async def api(self, path: str, role: Role = Role.VIEWER, **params: str) -> Any:
        response = await self.client.get(path, params=params, headers=self.bearer(role))
        assert response.status == 200, await response.text()
        return await response.json()

    async def page(self, path: str, **headers: str) -> str:
        return await (await self.client.get(path, headers=headers)).text()

    async def submit(self, page: str, path: str, **fields: str) -> tuple[int, str, str]:
        token = _csrf(await (await self.client.get(page)).text())
        response = await self.client.post(path, data={"csrf_token": token, **fields})
        return response.status, str(response.url.path), await response.text()


@pytest.fixture
async def desk(sqlite_engine: AsyncEngine) -> AsyncIterator[Desk]:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "sam", PASSWORD, Role.SUPPORT)
        await create_user(conn, "lee", PASSWORD, Role.LEAD)
        tokens = {role: await create_api_token(conn, f"t-{role}", role) for role in Role}
    client = TestClient(TestServer(create_app(sqlite_engine, session_secret=SECRET)))
    await client.start_server()
    try:
        yield Desk(client, tokens)
    finally:
        await client.close()


async def test_symptom_search_in_both_languages_and_the_incident_page_link(
    desk: Desk, sqlite_engine: AsyncEngine
) -> None:
    api = "/api/v1/knowledge"
    asked = await desk.client.get(
        api, params={"q": "打印机不出纸"}, headers=desk.bearer(Role.VIEWER, **ZH)
    )
    found = await asked.json()
    assert found["entries"][0]["id"] == "printer.not_ready"
    assert found["entries"][0]["title"] == "打印机不打印或不出纸"
    found = await desk.api(api, q="card declined")
    assert found["entries"][0]["id"] == "card_reader.errors"
    entry = await desk.api(f"{api}/printer.not_ready")
    assert entry["steps"][0].startswith("Open the cover") and entry["zh"]["steps"][0].startswith(
        "打开"
    )

    await desk.login("sam")
    page = await (
        await desk.client.get("/knowledge", params={"q": "打印机不出纸"}, headers=ZH)
    ).text()
    assert 'href="/knowledge/printer.not_ready"' in page
    assert "打印机不打印或不出纸" in _text(page)
    async with sqlite_engine.begin() as conn:
        spec = IncidentSpec(
            rule_id="printer.not_ready", title="Printer cannot print", component="printer",
            severity="error", escalation="remote_fix", cause="paper", remedy=["reload"],
            terminal_id="T-KB",
        )  # fmt: skip
        incident_id, _ = await open_incident(conn, spec, now=utcnow())
    page = await (await desk.client.get(f"/incidents/{incident_id}")).text()
    assert 'href="/knowledge/printer.not_ready"' in page
    assert "How to fix: Printer does not print or no paper comes out" in _text(page)
    in_chinese = _text(await desk.page(f"/incidents/{incident_id}", **ZH))
    assert "打印机不打印或不出纸" in in_chinese


async def test_a_lead_writes_and_edits_an_article_and_the_history_keeps_both(
    desk: Desk, sqlite_engine: AsyncEngine
) -> None:
    engine = sqlite_engine
    await desk.login("sam")
    refused = await desk.client.post("/knowledge", data={"title_en": "x", "steps_en": "y"})
    assert refused.status == 403
    body = {"title_en": "Receipt prints blank", "steps_en": ["Turn the paper roll over"]}
    sent = await desk.client.post("/api/v1/knowledge", json=body, headers=desk.bearer(Role.SUPPORT))
    assert sent.status == 403

    await desk.login("lee")
    status, path, page = await desk.submit(
        "/knowledge/new", "/knowledge", title_en="", title_zh="", steps_en="Turn it over"
    )
    assert status == 400 and 'id="title_en-error"' in page and "Turn it over" in page
    status, path, page = await desk.submit(
        "/knowledge/new",
        "/knowledge",
        title_en="Receipt prints blank",
        title_zh="小票打出来是空白的",
        symptoms_en="receipt is blank\nnothing on the receipt",
        symptoms_zh="小票是白的",
        steps_en="Turn the paper roll over (thermal side out)",
        models="V400m",
        rule_id="printer.not_ready",
    )
    assert status == 200 and re.fullmatch(r"/knowledge/\d+", path), path
    article = path.rsplit("/", 1)[1]
    status, path, page = await desk.submit(
        f"/knowledge/{article}/edit",
        f"/knowledge/{article}",
        title_en="Receipt prints blank",
        title_zh="小票打出来是空白的",
        symptoms_en="receipt is blank",
        steps_en="Turn the paper roll over (thermal side out)\nPrint a test receipt",
        base_revision="1",
        models="V400m",
        rule_id="printer.not_ready",
    )
    assert status == 200 and "Print a test receipt" in _text(page)
    history = await desk.page(f"/knowledge/{article}/history")
    assert re.findall(r'data-revision="(\d+)"', history) == ["2", "1"]
    assert "lee" in history
    assert "Turn the paper roll over (thermal side out) Print a test receipt" in _text(history)

    # Readers see their language, and the other where theirs is empty (no Chinese steps).
    zh = _text(await (await desk.client.get(f"/knowledge/{article}", headers=ZH)).text())
    assert "小票打出来是空白的" in zh and "Print a test receipt" in zh
    hits = await desk.api("/api/v1/knowledge", q="小票空白")
    assert hits["entries"][0]["id"] == article
    async with engine.connect() as conn:
        audit = [(e.action, e.actor) for e in await list_audit(conn)]
    assert ("knowledge.create", "user:lee") in audit and ("knowledge.edit", "user:lee") in audit
    api = "/api/v1/knowledge"
    lead = desk.bearer(Role.LEAD)
    for body, field in (
        ({"title_en": "", "steps_en": ["x"]}, "title_en"),
        ({"title_en": "x" * 201, "steps_en": ["x"]}, "title_en"),
        ({"title_en": "ok", "steps_en": ["x" * 501]}, "steps_en.0"),
        ({"title_en": "ok", "steps_en": ["x"], "colour": "red"}, "colour"),
    ):
        response = await desk.client.post(api, json=body, headers=lead)
        assert response.status == 400, body
        assert response.content_type == "application/problem+json"
        assert field in (await response.json())["detail"]
    only_zh = {"title_zh": "只有中文", "steps_zh": ["重启"]}
    created = await desk.client.post(api, json=only_zh, headers=lead)
    assert created.status == 201
    article = (await created.json())["id"]
    edit = {"steps_en": ["Restart"], "base_revision": 1}
    patched = await desk.client.patch(f"{api}/{article}", json=edit, headers=lead)
    assert patched.status == 200 and (await patched.json())["revision"] == 2
    stale = await desk.client.patch(f"{api}/{article}", json=edit, headers=lead)
    assert stale.status == 409  # revision 1 is no longer the latest
    assert (
        await desk.client.patch(f"{api}/printer.not_ready", json={}, headers=lead)
    ).status == 404
