"""Finding a merchant's terminal: search by any part of what the merchant can tell.

The store on SQLite and PostgreSQL (one pass each: the SQL and the indexes differ), the
search page, the search and merchant APIs and the fleet list's filters over aiohttp on
SQLite, and the merchant CSV import.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.central.cli_merchants import MerchantFileError, read_merchant_file
from posfleet.contract import Inventory, State, utcnow
from posfleet.dashboard import create_app
from posfleet.store import apply_inventory, apply_state, list_terminals
from posfleet.store.accounts import Role, create_api_token, create_user, list_audit
from posfleet.store.incidents import IncidentSpec, open_incident
from posfleet.store.merchants import MerchantChange, get_merchant, update_merchant
from posfleet.store.terminal_filters import TerminalFilter

SECRET = bytes(range(32))
PASSWORD = "find-terminals-viewer-9"
DUMPLINGS = "老北京饺子馆 Old Beijing"

Client = TestClient[web.Request, web.Application]


async def _terminal(
    engine: AsyncEngine, terminal_id: str, merchant_id: str, merchant_name: str, **more: str
) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        await apply_state(
            conn,
            terminal_id,
            State(online=True, agent_version="1.0.0", boot_id="b", ts=now),
            now=now,
        )
        inventory = Inventory(
            model="V400m",
            serial=f"SN{terminal_id.replace('-', '')}X",
            firmware_version="5.2.1",
            agent_version="1.0.0",
            merchant_id=merchant_id,
            merchant_name=merchant_name,
            site_id=more.get("site_id", "berlin-mitte"),
            site_name=more.get("site_name", "Berlin Mitte, Rosenthaler Str."),
            ts=now,
        )
        await apply_inventory(conn, terminal_id, inventory, now=now)


async def _fleet(engine: AsyncEngine) -> None:
    await _terminal(engine, "FIND-001", "M1001", DUMPLINGS)
    await _terminal(engine, "FIND-002", "M1001", DUMPLINGS)
    await _terminal(
        engine,
        "FIND-003",
        "M1000",
        "Bäckerei Sonnenschein",
        site_id="hh-1",
        site_name="Hamburg Hafen",
    )
    async with engine.begin() as conn:
        await update_merchant(
            conn,
            "M1001",
            MerchantChange(contact_name="王伟", contact_phone="+49 40 5550 1001"),
            actor="user:olga",
        )


async def _found(engine: AsyncEngine, text: str) -> list[str]:
    async with engine.connect() as conn:
        records = await list_terminals(conn, where=TerminalFilter(text=text), limit=50)
    return [r.terminal_id for r in records if r.terminal_id.startswith("FIND-")]


async def test_search_finds_terminals_by_every_part_a_merchant_can_tell(
    engine: AsyncEngine,
) -> None:
    await _fleet(engine)
    both = ["FIND-001", "FIND-002"]
    assert await _found(engine, "饺子") == both  # a part of the Chinese name
    assert await _found(engine, "old bei") == both  # the Latin part, any case
    assert await _found(engine, "BÄCKEREI") == ["FIND-003"]  # folded beyond ASCII
    assert await _found(engine, "040 5550 10") == both  # the contact phone, as dictated
    assert await _found(engine, "王伟") == both  # the contact's name
    assert await _found(engine, "snfind003") == ["FIND-003"]  # serial, any case
    assert await _found(engine, "hafen") == ["FIND-003"]  # the site's name
    assert await _found(engine, "find-00") == ["FIND-001", "FIND-002", "FIND-003"]
    assert await _found(engine, "100%") == []  # LIKE wildcards are text here
    async with engine.connect() as conn:
        record = (await list_terminals(conn, where=TerminalFilter(text="FIND-001"), limit=1))[0]
    assert (record.merchant_name, record.site_name) == (DUMPLINGS, "Berlin Mitte, Rosenthaler Str.")
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            indexes = (await conn.execute(sa.text(
                "SELECT indexdef FROM pg_indexes WHERE indexname LIKE '%search_text'"
            ))).scalars().all()  # fmt: skip
        assert len(indexes) == 2 and all("gin_trgm_ops" in i for i in indexes), indexes


async def test_staff_name_wins_over_the_inventory_and_is_searchable_at_once(
    engine: AsyncEngine,
) -> None:
    await _fleet(engine)
    async with engine.begin() as conn:
        await update_merchant(
            conn, "M1000", MerchantChange(name="Sonnenschein Backstube"), actor="user:olga"
        )
    # The terminal re-sends its inventory with the old name: staff's stays.
    await _terminal(engine, "FIND-003", "M1000", "Bäckerei Sonnenschein", site_id="hh-1")
    async with engine.connect() as conn:
        merchant = await get_merchant(conn, "M1000")
    assert merchant is not None
    assert (merchant.name, merchant.name_source, merchant.updated_by) == (
        "Sonnenschein Backstube", "staff", "user:olga"
    )  # fmt: skip
    assert await _found(engine, "backstube") == ["FIND-003"]
    async with engine.connect() as conn:
        record = (await list_terminals(conn, where=TerminalFilter(text="FIND-003"), limit=1))[0]
    assert record.merchant_name == "Sonnenschein Backstube"


# -- pages and API over aiohttp, on SQLite ------------------------------------------------


@pytest.fixture
async def seeded(sqlite_engine: AsyncEngine) -> AsyncEngine:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "vera", PASSWORD, Role.VIEWER)
    await _fleet(sqlite_engine)
    return sqlite_engine


@pytest.fixture
async def viewer(seeded: AsyncEngine) -> AsyncIterator[Client]:
    async with TestClient(TestServer(create_app(seeded, session_secret=SECRET))) as client:
        page = await (await client.get("/login")).text()
        token = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert token
        form = {"csrf_token": token.group(1), "username": "vera", "password": PASSWORD}
        assert (await client.post("/login", data=form, allow_redirects=False)).status == 303
        yield client


async def _bearer(engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, f"find-{role}", role)
    return {"Authorization": f"Bearer {token}"}


async def test_search_page_lists_terminals_merchants_and_links_on(viewer: Client) -> None:
    response = await viewer.get("/search", params={"q": "饺子馆"})
    assert response.status == 200
    html = await response.text()
    assert "2 terminals match '饺子馆'." in html
    assert '<a href="/terminals/FIND-001"><code>FIND-001</code></a>' in html
    assert "FIND-003" not in html
    merchant = re.search(r'<tr data-merchant-id="M1001">(.*?)</tr>', html)
    assert merchant, "the merchant is not listed"
    assert "王伟" in merchant.group(1) and 'href="tel:+494055501001"' in merchant.group(1)
    assert '<a href="/?merchant=M1001">2</a>' in merchant.group(1)
    assert 'value="饺子馆"' in html  # the header's box shows what was searched
    assert "No case matches." in html


async def test_search_api_answers_json_and_refuses_bad_input(
    viewer: Client, seeded: AsyncEngine
) -> None:
    headers = await _bearer(seeded, Role.VIEWER)
    response = await viewer.get("/api/v1/search", params={"q": "5550 1001"}, headers=headers)
    assert response.status == 200
    body = await response.json()
    assert [t["terminal_id"] for t in body["terminals"]] == ["FIND-001", "FIND-002"]
    assert body["terminal_matches"] == 2 and body["more_terminals"] is False
    assert [m["merchant"]["merchant_id"] for m in body["merchants"]] == ["M1001"]
    for params, name in (
        ({}, "q"),
        ({"q": "x" * 65}, "q"),
        ({"q": "a", "limit": "0"}, "limit"),
        ({"q": "a", "qq": "1"}, "qq"),
    ):
        bad = await viewer.get("/api/v1/search", params=params, headers=headers)
        assert bad.status == 400, params
        assert bad.content_type == "application/problem+json"
        assert name in await bad.text()


async def test_ops_set_a_merchants_contact_audited_and_viewers_cannot(
    viewer: Client, seeded: AsyncEngine
) -> None:
    change = {"contact_phone": "+49 30 1234 5678", "city": "Berlin", "reason": "merchant called"}
    refused = await viewer.put(
        "/api/v1/merchants/M1000", json=change, headers=await _bearer(seeded, Role.SUPPORT)
    )
    assert refused.status == 403
    ops = await _bearer(seeded, Role.OPS)
    response = await viewer.put("/api/v1/merchants/M1000", json=change, headers=ops)
    assert response.status == 200, await response.text()
    assert (await response.json())["contact_phone"] == "+49 30 1234 5678"
    bad = await viewer.put(
        "/api/v1/merchants/M1000", json={"contact_phone": "call me"}, headers=ops
    )
    assert bad.status == 400 and "contact_phone" in await bad.text()
    listed = await (
        await viewer.get("/api/v1/merchants", params={"q": "1234 5678"}, headers=ops)
    ).json()
    assert [m["merchant_id"] for m in listed["items"]] == ["M1000"]
    assert await _found(seeded, "030 1234") == ["FIND-003"]
    async with seeded.connect() as conn:
        entries = [e for e in await list_audit(conn) if e.action.startswith("merchant.")]
    assert [(e.action, e.target, e.reason) for e in entries] == [
        ("merchant.update", "M1000", "merchant called")
    ]


async def test_fleet_list_filters_faulty_sorts_and_pages(
    viewer: Client, seeded: AsyncEngine
) -> None:
    spec = IncidentSpec(
        rule_id="printer.not_ready", title="Printer cannot print", component="printer",
        severity="error", escalation="remote_fix", cause="No paper.", remedy=["Reload paper"],
        terminal_id="FIND-002",
    )  # fmt: skip
    async with seeded.begin() as conn:
        await open_incident(conn, spec, now=utcnow() - timedelta(minutes=1))
    html = await (await viewer.get("/?faulty=true")).text()
    assert "FIND-002" in html and "FIND-001" not in html
    assert re.search(r'<a href="/\?faulty=true" aria-current="page">With open incidents</a>', html)
    page = await (await viewer.get("/?limit=2&sort=-last_seen")).text()
    assert page.count("<tr data-terminal-id=") + page.count('<tr class="') == 2
    following = re.search(r'<p class="paging"><a href="([^"]+)">Next page</a>', page)
    assert following and "after=" in following.group(1) and "sort=-last_seen" in following.group(1)
    rest = await (await viewer.get(following.group(1).replace("&amp;", "&"))).text()
    assert "Next page" not in rest and 'data-terminal-id="FIND-' in rest
    assert (await viewer.get("/?faulty=maybe")).status == 400


def test_merchant_csv_import_names_the_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "merchants.csv"
    good.write_text(
        "merchant_id,name,contact_phone\nM1,Café Morgenrot,+49 89 555\nM2,,\n", encoding="utf-8"
    )
    rows = read_merchant_file(good)
    assert [(mid, c.name, c.contact_phone) for mid, c in rows] == [
        ("M1", "Café Morgenrot", "+49 89 555"), ("M2", None, None)
    ]  # fmt: skip
    bad = tmp_path / "bad.csv"
    bad.write_text("merchant_id,contact_phone\nM1,+49 1\nM2,ring ring\n", encoding="utf-8")
    with pytest.raises(MerchantFileError, match=r"bad.csv:3: contact_phone"):
        read_merchant_file(bad)
