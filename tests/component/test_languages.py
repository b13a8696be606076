"""Pages and API answers in the user's language: Simplified Chinese for a browser that asks
for it, the account's own setting above the browser's, English problem keys with Chinese
texts. Through the real app on a migrated SQLite file."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.store.accounts import Role, create_api_token, create_user, list_audit

SECRET = bytes(range(96, 128))
PASSWORD = "printer-out-of-paper-7"
CHINESE = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(sqlite_engine: AsyncEngine) -> AsyncIterator[Client]:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "lin", PASSWORD, Role.ADMIN)
    app = create_app(sqlite_engine, session_secret=SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field on the page"
    return match.group(1)


async def _log_in(client: Client) -> str:
    form = await client.get("/login", headers=CHINESE)
    assert "登录" in await form.text()
    data = {"csrf_token": _csrf(await form.text()), "username": "lin", "password": PASSWORD}
    response = await client.post("/login", data=data, headers=CHINESE, allow_redirects=False)
    assert response.status == 303
    return _csrf(await (await client.get("/account", headers=CHINESE)).text())


async def test_a_chinese_browser_gets_chinese_pages_and_dates_until_the_account_says_english(
    client: Client, sqlite_engine: AsyncEngine
) -> None:
    csrf = await _log_in(client)
    page = await client.get("/admin/users/1", headers=CHINESE)
    html = await page.text()
    assert page.headers["Content-Language"] == "zh-CN"
    assert '<html lang="zh-CN">' in html
    assert "退出登录" in html  # the header's "Log out"
    assert "重置密码" in html  # the page's own "Reset the password"
    for section in ("概览", "终端总览", "知识库", "报表"):  # every header section, in Chinese
        assert f">{section}</a>" in html, section
    assert "语言: 跟随浏览器" in html  # no setting yet: the browser decides
    year = datetime.now(UTC).year
    assert re.search(rf"{year}年\d{{1,2}}月\d{{1,2}}日 \d\d:\d\d UTC", html), "no Chinese date"

    form = {"csrf_token": csrf, "locale": "en", "next": "/admin/users/1"}
    switched = await client.post("/account", data=form, headers=CHINESE, allow_redirects=False)
    assert switched.status == 303
    assert switched.headers["Location"] == "/admin/users/1"
    html = await (await client.get("/admin/users/1", headers=CHINESE)).text()
    assert '<html lang="en">' in html
    assert "Log out" in html and "退出登录" not in html
    assert "Language: English" in html
    assert re.search(rf"{year}-\d\d-\d\d \d\d:\d\dZ", html), "no English date"

    async with sqlite_engine.connect() as conn:
        entries = [e for e in await list_audit(conn) if e.action == "user.locale"]
    assert [(e.actor, e.detail) for e in entries] == [("user:lin", {"from": "browser", "to": "en"})]


async def test_the_account_page_saves_chinese_for_an_english_browser_and_refuses_others(
    client: Client,
) -> None:
    csrf = await _log_in(client)
    saved = await client.post("/account", data={"csrf_token": csrf, "locale": "zh_CN"})
    html = await saved.text()
    assert "语言设置已保存。" in html
    assert '<option value="zh_CN" selected>简体中文</option>' in html
    bad = await client.post("/account", data={"csrf_token": csrf, "locale": "tlh"})
    assert bad.status == 400
    assert "请选择提供的语言之一" in await bad.text()
    away = {"csrf_token": csrf, "locale": "", "next": "https://elsewhere.example/"}
    back = await client.post("/account", data=away, allow_redirects=False)
    assert back.headers["Location"] == "/account"
    assert "Follow the browser" in await (await client.get("/account")).text()


async def test_problems_keep_english_keys_with_chinese_texts_for_a_chinese_client(
    client: Client, sqlite_engine: AsyncEngine
) -> None:
    async with sqlite_engine.begin() as conn:
        token = await create_api_token(conn, "helpdesk-bot", Role.VIEWER)
    headers = {"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"}
    response = await client.get("/api/v1/no-such-route", headers=headers)
    assert response.status == 404
    assert response.content_type == "application/problem+json"
    body = await response.json()
    assert body["title"] == "未找到"
    assert body["detail"] == "未找到"
    assert body["code"] == "not_found"
    assert set(body) == {"type", "title", "status", "detail", "code"}

    english = await client.get(
        "/api/v1/no-such-route", headers={"Authorization": headers["Authorization"]}
    )
    assert (await english.json())["title"] == "Not Found"
