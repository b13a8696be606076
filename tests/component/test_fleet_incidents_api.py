"""Fleet incidents through the JSON API as through the incident page and the CLI.

Playbooks run through the real broker to scripted terminals, and the fleet incidents are
made by the real recorder from health reports, over a real, migrated SQLite database.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import BrokerLogin, MqttPublisher
from posfleet.contract import (
    Channel,
    HealthMetrics,
    HealthReport,
    Inventory,
    Message,
    Network,
    NetworkType,
    Topic,
)
from posfleet.dashboard import create_app
from posfleet.dashboard.incidents_api import PLAYBOOK_RUNNER_KEY
from posfleet.diagnostics.command_channel import DownlinkCommandSender
from posfleet.diagnostics.incident_actions import change_incident
from posfleet.diagnostics.incident_lifecycle import resolve_by_staff
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.store import apply_inventory
from posfleet.store.accounts import Role, create_api_token, create_user
from tests.component.test_incident_playbooks_page import _broken_printer, _host_down
from tests.component.test_incidents_page import (
    PASSWORD,
    _client,
    _fact,
    _open,
    _page,
    _printer_spec,
    _site_outage,
)
from tests.component.test_playbooks import Answer, ScriptedTerminal
from tests.harness import PrivateBroker

SECRET = bytes(range(32))
T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
API = TestClient[web.Request, web.Application]


@pytest.fixture
async def runner(
    sqlite_engine: AsyncEngine, broker: PrivateBroker
) -> AsyncIterator[PlaybookRunner]:
    login = BrokerLogin(
        *broker.address_for(broker.central), broker.central.username, broker.central.password
    )
    async with MqttPublisher(login) as downlink:
        await downlink.wait_ready(10)
        yield PlaybookRunner(sqlite_engine, DownlinkCommandSender(downlink))


@pytest.fixture
async def api(sqlite_engine: AsyncEngine, runner: PlaybookRunner) -> AsyncIterator[API]:
    """The API of a dashboard that runs playbooks through the real broker."""
    app = create_app(sqlite_engine, session_secret=SECRET)
    app[PLAYBOOK_RUNNER_KEY] = runner
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture
def terminals(broker: PrivateBroker) -> Iterator[Callable[[str, Answer], ScriptedTerminal]]:
    made: list[ScriptedTerminal] = []

    def make(terminal_id: str, answer: Answer) -> ScriptedTerminal:
        made.append(ScriptedTerminal(broker, terminal_id, answer))
        return made[-1]

    yield make
    for terminal in made:
        terminal.close()


async def _token(engine: AsyncEngine, role: Role) -> dict[str, str]:
    async with engine.begin() as conn:
        token = await create_api_token(conn, f"test-{role}", role)
    return {"Authorization": f"Bearer {token}"}


async def _problem(response: ClientResponse) -> dict[str, Any]:
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json()
    assert body["status"] == response.status
    assert body["title"] == HTTPStatus(response.status).phrase
    return body


async def _run(
    api: API, headers: dict[str, str], incident_id: int, **body: str
) -> list[dict[str, Any]]:
    response = await api.post(
        f"/api/v1/incidents/{incident_id}/playbooks", json=body, headers=headers
    )
    assert response.status == 200, await response.text()
    runs: list[dict[str, Any]] = (await response.json())["runs"]
    return runs


async def test_the_api_runs_a_fleet_playbook_on_every_affected_terminal_or_a_chosen_one(
    api: API,
    sqlite_engine: AsyncEngine,
    terminals: Callable[[str, Answer], ScriptedTerminal],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tag = tmp_path_factory.mktemp("api").name[-6:]
    ids = [f"APIF{k}-{tag}" for k in range(3)]
    for terminal_id in ids:
        terminals(terminal_id, _host_down)
    fleet, children = await _site_outage(sqlite_engine, ids)
    child_of = dict(zip(ids, children, strict=True))
    support = await _token(sqlite_engine, Role.SUPPORT)

    runs = await _run(api, support, fleet, playbook="card_payments_failing")
    assert sorted(run["terminal_id"] for run in runs) == sorted(ids)
    for run in runs:
        # Each run is on the terminal's own incident, and says what the terminal found.
        assert run["incident_id"] == child_of[run["terminal_id"]]
        assert run["state"] == "succeeded" and run["finished_at"] is not None
        findings = " ".join(step["finding"] for step in run["steps"])
        assert "no connection to the acquirer host" in findings

    [run] = await _run(api, support, fleet, playbook="printer_check", terminal=ids[1])
    assert (run["terminal_id"], run["incident_id"]) == (ids[1], child_of[ids[1]])

    # The fleet incident's detail lists every run on its terminals, as its page does.
    response = await api.get(f"/api/v1/incidents/{fleet}", headers=support)
    detail = await response.json()
    assert len(detail["playbook_runs"]) == 4
    assert {r["incident_id"] for r in detail["playbook_runs"]} == set(children)

    # A terminal that recovered is not "affected" any more: "*" leaves it out.
    async with sqlite_engine.begin() as conn:
        resolved = partial(resolve_by_staff, by="alice", resolution="", now=datetime.now(UTC))
        await change_incident(conn, child_of[ids[0]], resolved)
    runs = await _run(api, support, fleet, playbook="self_test", terminal="*")
    assert sorted(run["terminal_id"] for run in runs) == sorted(ids[1:])


@pytest.mark.parametrize(
    ("body", "name", "detail"),
    [
        (
            {"playbook": "self_test", "terminal": "SOMEONE-ELSE"},
            "terminal",
            "terminal 'SOMEONE-ELSE' is not one of this fleet incident's terminals",
        ),
        ({"playbook": "self_test", "terminal": 7}, "terminal", "terminal must be one of"),
        ({"playbook": "no_such_playbook"}, "playbook", "no playbook 'no_such_playbook'"),
        ({}, "playbook", "playbook must be a text"),
    ],
)
async def test_a_fleet_playbook_for_a_terminal_it_does_not_cover_is_a_clear_400(
    api: API, sqlite_engine: AsyncEngine, body: dict[str, Any], name: str, detail: str
) -> None:
    fleet, _children = await _site_outage(sqlite_engine, ["QUIET-1", "QUIET-2", "QUIET-3"])
    response = await api.post(
        f"/api/v1/incidents/{fleet}/playbooks",
        json=body,
        headers=await _token(sqlite_engine, Role.SUPPORT),
    )
    assert response.status == 400
    problem = await _problem(response)
    assert [p["name"] for p in problem["invalid_params"]] == [name]
    assert detail in problem["detail"]


async def test_a_terminal_incidents_playbook_runs_on_its_terminal_alone(
    api: API,
    sqlite_engine: AsyncEngine,
    terminals: Callable[[str, Answer], ScriptedTerminal],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    terminal_id = f"APIP-{tmp_path_factory.mktemp('p').name[-6:]}"
    terminals(terminal_id, _broken_printer)
    incident_id = await _open(sqlite_engine, _printer_spec(terminal_id))
    support = await _token(sqlite_engine, Role.SUPPORT)

    [run] = await _run(api, support, incident_id, playbook="printer_check")
    assert (run["terminal_id"], run["incident_id"]) == (terminal_id, incident_id)
    assert run["verdict"] == "The printer cannot print a test page."
    assert "printer no_paper, 0 lines left" in run["steps"][0]["finding"]

    response = await api.post(
        f"/api/v1/incidents/{incident_id}/playbooks",
        json={"playbook": "printer_check", "terminal": "T-OTHER"},
        headers=support,
    )
    assert response.status == 400
    assert "is not this incident's terminal" in (await _problem(response))["detail"]
    missing = await api.post(
        "/api/v1/incidents/999999/playbooks", json={"playbook": "self_test"}, headers=support
    )
    assert missing.status == 404
    viewer = await api.post(
        f"/api/v1/incidents/{incident_id}/playbooks",
        json={"playbook": "self_test"},
        headers=await _token(sqlite_engine, Role.VIEWER),
    )
    assert viewer.status == 403


# -- a fleet incident's identity, as the API, the CLI and the page show it -----------------


async def _site_outage_from_reports(engine: AsyncEngine, ids: list[str]) -> None:
    """Terminals of site S-5 (merchant M-55) report the host unreachable: the recorder
    groups them into one fleet incident."""
    async with engine.begin() as conn:
        for terminal_id in ids:
            inventory = Inventory(
                model="PF-C200",
                serial=terminal_id,
                firmware_version="2.4.1",
                agent_version="1.0.0",
                site_id="S-5",
                merchant_id="M-55",
                ts=T0,
            )
            await apply_inventory(conn, terminal_id, inventory, now=T0)
    diagnostics = Diagnostics(engine, DiagnosticsSettings(tick_interval_s=3600), clock=lambda: T0)
    async with diagnostics:
        for terminal_id in ids:
            metrics = HealthMetrics(network=Network(type=NetworkType.WIFI, host_reachable=False))
            report = HealthReport(seq=1, ts=T0, interval_s=60, metrics=metrics)
            await diagnostics.judge([Message(Topic(terminal_id, Channel.HEALTH), report)])


async def _cli(database_url: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_")}
    env["POSFLEET_DATABASE_URL"] = database_url
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("posfleet")),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def test_the_api_the_cli_and_the_page_agree_on_a_fleet_incidents_site_and_merchant(
    api: API, sqlite_engine: AsyncEngine, sqlite_url: str
) -> None:
    await _site_outage_from_reports(sqlite_engine, ["SHOP5-1", "SHOP5-2", "SHOP5-3"])
    viewer = await _token(sqlite_engine, Role.VIEWER)

    response = await api.get(
        "/api/v1/incidents", params={"kind": "fleet", "merchant_id": "M-55"}, headers=viewer
    )
    [fleet] = (await response.json())["items"]
    assert (fleet["site_id"], fleet["merchant_id"]) == ("S-5", "M-55")
    assert "check the router or modem on site" in " ".join(fleet["remedy"])

    shown = await _cli(sqlite_url, "incidents", "show", str(fleet["id"]))
    assert "where:       site S-5, merchant M-55" in shown
    assert "check the router or modem on site" in shown
    as_json = json.loads(await _cli(sqlite_url, "incidents", "show", str(fleet["id"]), "--json"))
    assert as_json["incident"]["merchant_id"] == "M-55"

    async with sqlite_engine.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    browser = await _client(sqlite_engine, "alice")
    try:
        html = await _page(browser, f"/incidents/{fleet['id']}")
    finally:
        await browser.close()
    assert (_fact(html, "site"), _fact(html, "merchant")) == ("S-5", "M-55")
    assert "check the router or modem on site" in html
