"""The terminal page's health layout, its charts (page and API) and its live stream.

Through a real aiohttp server on SQLite: a support person's browser session for the page
and the stream, an API token for the JSON.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Battery,
    CardReader,
    HealthMetrics,
    HealthReport,
    Inventory,
    Keys,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    ReaderCounters,
    State,
    utcnow,
)
from posfleet.dashboard import create_app, terminal_charts
from posfleet.dashboard.terminal_live import LIVE_KEY
from posfleet.dashboard.terminal_panels import panels_of
from posfleet.store import apply_health, apply_inventory, apply_state
from posfleet.store.accounts import Role, create_api_token, create_user
from posfleet.store.schema import health_rollups
from tests.harness.waiting import async_wait_for

SECRET = bytes(range(32))
PASSWORD = "terminal-live-support-3"

Client = TestClient[web.Request, web.Application]


def _sick() -> HealthMetrics:
    """A terminal with one item of each class: faults, warnings and healthy ones."""
    return HealthMetrics(
        battery=Battery(percent=17, charging=False),  # warning: under 20 %, not under 15 %
        temperature_c=41.5,  # ok
        printer=Printer(status=PrinterStatus.JAM),  # fault
        card_reader=CardReader(
            chip=ReaderCounters(reads=100, errors=12),  # fault: 12 % of 100
            magstripe=ReaderCounters(reads=100, errors=3),  # warning: 3 %
            contactless=ReaderCounters(reads=200, errors=1),  # ok: 0.5 %
        ),
        network=Network(type=NetworkType.WIFI, rssi_dbm=-78, host_reachable=False),
        storage_used_pct=93,  # fault
        keys=Keys(dukpt_remaining=700_000),  # ok
        tamper=False,
    )


async def _report(engine: AsyncEngine, terminal_id: str, seq: int, health: HealthMetrics) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        report = HealthReport(seq=seq, ts=now, interval_s=30, metrics=health)
        await apply_health(conn, terminal_id, report, now=now)


async def _terminal(engine: AsyncEngine, terminal_id: str) -> None:
    now = utcnow()
    async with engine.begin() as conn:
        state = State(online=True, agent_version="1.4.0", boot_id="boot-1", ts=now)
        await apply_state(conn, terminal_id, state, now=now)
        inventory = Inventory(
            model="V400m",
            serial=f"SN-{terminal_id}",
            firmware_version="5.2.1",
            agent_version="1.4.0",
            merchant_id="M1001",
            site_id="S-7",
            ts=now,
        )
        await apply_inventory(conn, terminal_id, inventory, now=now)


def _hour(hours_ago: int) -> datetime:
    return utcnow().replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours_ago)


def _rollup(hours_ago: int, **figures: Any) -> dict[str, Any]:
    return {
        "terminal_id": "LIVE-0001",
        "hour": _hour(hours_ago),
        "samples": 120,
        "temperature_sum": 0.0,
        "temperature_count": 0,
        **dict.fromkeys(_FIGURES),
        **figures,
    }


_FIGURES = ("battery_min", "rssi_min", "reader_reads_max", "reader_errors_max", "declined_max")


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "sue", PASSWORD, Role.SUPPORT)
    await _terminal(sqlite_engine, "LIVE-0001")
    await _report(sqlite_engine, "LIVE-0001", 1, _sick())
    rows = [
        # Two days ago: outside 24 h, inside 7 d.
        _rollup(48, battery_min=90.0, reader_reads_max=10, reader_errors_max=0, declined_max=0),
        _rollup(3, battery_min=60.0, reader_reads_max=100, reader_errors_max=2, declined_max=3),
        _rollup(2, battery_min=41.5, rssi_min=-82, reader_reads_max=200, reader_errors_max=12),
        # A restart between the hours: the counters began again from zero.
        _rollup(1, battery_min=30.0, reader_reads_max=50, reader_errors_max=0, declined_max=1),
    ]
    async with sqlite_engine.begin() as conn:
        await conn.execute(sa.insert(health_rollups), rows)
    return sqlite_engine


@pytest.fixture
async def app(engine: AsyncEngine) -> web.Application:
    app = create_app(engine, session_secret=SECRET)
    app[LIVE_KEY].interval_s = 0.05  # the page's 1.5 s, shortened for the test
    return app


async def _log_in(client: Client) -> None:
    login_page = await (await client.get("/login")).text()
    token = re.search(r'name="csrf_token" value="([^"]+)"', login_page)
    assert token
    form = {"csrf_token": token.group(1), "username": "sue", "password": PASSWORD}
    assert (await client.post("/login", data=form, allow_redirects=False)).status == 303


@pytest.fixture
async def support(app: web.Application) -> AsyncIterator[Client]:
    async with TestClient(TestServer(app)) as client:
        await _log_in(client)
        yield client


async def _api(client: Client, engine: AsyncEngine, path: str) -> ClientResponse:
    async with engine.begin() as conn:
        token = await create_api_token(conn, "charts-test", Role.VIEWER)
    return await client.get(path, headers={"Authorization": f"Bearer {token}"})


def _classes(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-health="(\w+)" data-status="(\w+)"', html))


async def test_health_is_laid_out_as_support_reads_it_with_its_class(
    support: Client, engine: AsyncEngine
) -> None:
    html = await (await support.get("/terminals/LIVE-0001")).text()
    health = html[html.index('id="panel-health"') : html.index('id="panel-charts"')]
    assert _classes(health) == {
        "printer": "fault",
        "reader_chip": "fault",
        "reader_magstripe": "warning",
        "reader_contactless": "ok",
        "host": "fault",
        "network": "warning",
        "battery": "warning",
        "temperature": "ok",
        "storage": "fault",
        "memory": "unknown",
        "keys": "ok",
        "tamper": "ok",
        "clock": "unknown",
        "transactions": "unknown",
        "uptime": "unknown",
    }
    assert 'Latest health <span class="badge bad">fault</span>' in health
    assert "12 of 100 reads failed (12%)" in health
    assert "wifi, -78 dBm (weak)" in health

    response = await _api(support, engine, "/api/v1/terminals/LIVE-0001/health")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "fault"
    assert {item["key"]: item["status"] for item in body["items"]} == _classes(health)
    printer = next(item for item in body["items"] if item["key"] == "printer")
    assert (printer["label"], printer["value"]) == ("Printer", "jam")


async def test_charts_api_gives_hourly_figures_over_24_hours_and_7_days(
    support: Client, engine: AsyncEngine
) -> None:
    response = await _api(support, engine, "/api/v1/terminals/LIVE-0001/charts?period=24h")
    assert response.status == 200
    day = await response.json()
    assert day["period"] == "24h" and len(day["hours"]) == 24
    series = {s["name"]: s["values"] for s in day["series"]}
    assert set(series) == {"battery", "temperature", "rssi", "reader_error_rate", "declines"}
    # The last four hours: three stored, the current one not yet.
    assert series["battery"][-4:] == [60.0, 41.5, 30.0, None]
    assert series["rssi"][-4:] == [None, -82.0, None, None]
    # 10 of 100 new reads failed, then 0 of 50 after the restart. The first hour has no
    # figures from the hour before to count its increase from.
    assert series["reader_error_rate"][-4:] == [None, 10.0, 0.0, None]
    assert series["declines"][-4:] == [None, None, 1.0, None]

    week = await (
        await _api(support, engine, "/api/v1/terminals/LIVE-0001/charts?period=7d")
    ).json()
    assert len(week["hours"]) == 7 * 24
    week_series = {s["name"]: s["values"] for s in week["series"]}
    assert 90.0 in week_series["battery"]
    assert week_series["reader_error_rate"][-4:] == [2.2, 10.0, 0.0, None]  # 2 of 90 new reads
    assert week_series["declines"][-4:] == [3.0, None, 1.0, None]

    bad = await _api(support, engine, "/api/v1/terminals/LIVE-0001/charts?period=1y")
    assert bad.status == 400 and "period must be 24h or 7d" in await bad.text()
    missing = await _api(support, engine, "/api/v1/terminals/LIVE-9999/charts")
    assert missing.status == 404


async def test_charts_panel_has_the_same_figures_as_a_table(
    support: Client,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    html = await (await support.get("/terminals/LIVE-0001?period=7d")).text()
    assert 'src="/static/vendor/chart.min.js"' in html
    charts = html[html.index('id="panel-charts"') : html.index('id="panel-incidents"')]
    assert '<a href="?period=7d" aria-current="page">7 days</a>' in charts
    assert "Battery (lowest) (%): lowest 30, highest 90, latest 30" in charts
    assert charts.count("<canvas") == 4  # no temperature was reported: no empty chart
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th>((?:<td>[^<]*</td>)+)</tr>', charts)
    assert len(rows) == 4  # only the hours with figures, newest first
    assert re.findall(r"<td>([^<]*)</td>", rows[1][1]) == ["41.5", "-", "-82", "10", "-"]

    # Without the charting library the log says so and the page shows the table open.
    monkeypatch.setattr(terminal_charts, "CHART_LIBRARY", Path("/nonexistent/chart.min.js"))
    async with TestClient(TestServer(create_app(engine, session_secret=SECRET))) as bare:
        assert "the charting library /nonexistent/chart.min.js is missing" in caplog.text
        await _log_in(bare)
        html = await (await bare.get("/terminals/LIVE-0001")).text()
    assert "chart.min.js" not in html and "<canvas" not in html
    assert '<details class="chart-table" open>' in html


async def _events(response: ClientResponse) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    name = ""
    while True:
        async with asyncio.timeout(5):
            line = (await response.content.readline()).decode()
        if line.startswith("event: "):
            name = line.removeprefix("event: ").strip()
        elif line.startswith("data: ") and name:
            yield name, json.loads(line.removeprefix("data: "))


async def test_live_stream_delivers_the_panel_that_changed(
    support: Client, engine: AsyncEngine, app: web.Application
) -> None:
    response = await support.get("/terminals/LIVE-0001/live")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    events = _events(response)
    # The first round sends every panel: the page's own, then those other features add.
    first = [await anext(events) for _ in panels_of(app)]
    assert [data["name"] for _, data in first][:5] == [
        "summary",
        "health",
        "charts",
        "incidents",
        "firmware",
    ]
    page = await (await support.get("/terminals/LIVE-0001")).text()
    for _, data in first:  # the page shows the same panels, so it keeps them as they are
        assert (
            f'id="panel-{data["name"]}" class="panel terminal-panel" data-digest="{data["digest"]}"'
            in page
        )

    fixed = _sick().model_copy(update={"printer": Printer(status=PrinterStatus.OK)})
    await _report(engine, "LIVE-0001", 2, fixed)
    changed: set[str] = set()
    async for kind, data in events:
        assert kind == "panel"
        changed.add(data["name"])
        if data["name"] == "health":
            assert _classes(data["html"])["printer"] == "ok"
            break
    assert changed <= {"summary", "health"}  # last seen and health; nothing else moved

    response.close()
    await async_wait_for(lambda: app[LIVE_KEY].open == 0, description="the stream ends")

    assert (await support.get("/terminals/LIVE-9999/live")).status == 404
