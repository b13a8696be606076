"""The reports through a real server: the API's JSON, CSV and XLSX, bad periods, roles,
and the pages a viewer reads in English and in Chinese."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from openpyxl import load_workbook  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.dashboard import create_app
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.store.accounts import Role, create_api_token, create_user
from tests.component.report_rows import FROM, TO, seed_reports

Client = TestClient[web.Request, web.Application]
PASSWORD = "correct horse battery"
PERIOD = f"from={FROM}&to={TO}"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


@pytest.fixture
async def client(sqlite_engine: AsyncEngine) -> AsyncIterator[Client]:
    await seed_reports(sqlite_engine)
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "vera", PASSWORD, Role.VIEWER)
    app = create_app(sqlite_engine, session_secret=bytes(range(32)))
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def _viewer(client: Client) -> dict[str, str]:
    async with _engine(client).begin() as conn:
        token = await create_api_token(conn, "report-reader", Role.VIEWER)
    return {"Authorization": f"Bearer {token}"}


def _engine(client: Client) -> AsyncEngine:
    return client.app[ENGINE_KEY]


BAD_PERIODS = [
    ("from=2026-03-10&to=2026-03-01", "to"),  # to before from
    ("from=the-first-of-march", "from"),  # not a date
    ("from=2025-01-01&to=2026-03-01", "to"),  # over a year
    ("preset=1y", "preset"),
    ("format=pdf", "format"),
    ("since=2026-03-01", "since"),  # the analytics' name, not this API's
]


async def _refusals(client: Client, auth: dict[str, str]) -> None:
    for query, parameter in BAD_PERIODS:
        answer = await client.get(f"/api/v1/reports/weekly-trend?{query}", headers=auth)
        assert answer.status == 400, query
        assert answer.content_type == "application/problem+json"
        problem = await answer.json()
        assert parameter in [p["name"] for p in problem["invalid_params"]], query
    assert (await client.get("/api/v1/reports/maintenance")).status == 401
    page = await client.get("/reports/maintenance", allow_redirects=False)
    assert page.status in (303, 401)


async def _log_in(client: Client) -> None:
    form_page = await (await client.get("/login")).text()
    match = re.search(r'name="csrf_token" value="([^"]+)"', form_page)
    assert match
    form = {"csrf_token": match.group(1), "username": "vera", "password": PASSWORD}
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 303


async def _pages(client: Client) -> None:
    await _log_in(client)
    index = await client.get("/reports?preset=7d")
    assert index.status == 200
    assert 'href="/reports/maintenance?preset=7d"' in await index.text()

    page = await client.get(f"/reports/response-times?{PERIOD}")
    html = await page.text()
    assert page.status == 200
    assert "Mean time to acknowledge" in html
    # MTTA over everything: 975 s, shown as a duration; alice's 900 s as 15 min.
    assert "16 min 15 s" in html and "15 min" in html
    assert f"/reports/response-times/export?format=xlsx&amp;{PERIOD.replace('&', '&amp;')}" in html

    download = await client.get(f"/reports/weekly-trend/export?format=csv&{PERIOD}")
    assert download.status == 200
    weeks = list(csv.DictReader(io.StringIO(await download.text())))
    assert [(w["week_start"], w["incidents"]) for w in weeks] == [
        ("2026-03-02", "3"),
        ("2026-03-09", "3"),
        ("2026-03-16", "0"),
    ]

    chinese = await client.get(
        f"/reports/top-problems?{PERIOD}", headers={"Accept-Language": "zh-CN"}
    )
    assert "常见问题" in await chinese.text()

    assert (await client.get("/reports/no-such-report")).status == 404
    assert (await client.get("/reports/top-problems?to=2026-01-01&from=2026-02-01")).status == 400


async def test_a_viewer_reads_the_reports_by_api_and_page(client: Client) -> None:
    """One app for every check: each new one costs a migrated database and a password hash."""
    auth = await _viewer(client)
    answer = await client.get(f"/api/v1/reports/response-times?{PERIOD}", headers=auth)
    assert answer.status == 200
    body = await answer.json()
    overall = body["rows"][0]
    assert (overall["group"], overall["mtta_s"], overall["mttr_s"]) == ("all", 975.0, 4500.0)
    assert body["since"].startswith("2026-03-02T00:00:00")

    as_csv = await client.get(f"/api/v1/reports/top-problems?{PERIOD}&format=csv", headers=auth)
    assert as_csv.status == 200 and as_csv.content_type == "text/csv"
    assert "top-problems_2026-03-02_2026-03-21.csv" in as_csv.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(await as_csv.text())))
    assert rows[0] == {"dimension": "rule", "key": "printer.paper_out", "incidents": "3"}

    as_xlsx = await client.get(
        f"/api/v1/reports/repeated-faults?{PERIOD}", headers={**auth, "Accept": XLSX}
    )
    assert as_xlsx.status == 200 and as_xlsx.content_type == XLSX
    book = load_workbook(io.BytesIO(await as_xlsx.read()), read_only=True)
    sheet = list(book["repeated-faults"].iter_rows(values_only=True))
    assert sheet[1][:4] == ("T-1", "printer", 3, 2)

    # A bad period is a 400 problem naming the parameter; a stranger gets 401.
    await _refusals(client, auth)
    # The pages: charts, tables and downloads, in English and Chinese.
    await _pages(client)
