"""Playbooks from the incident pages, through the real broker to scripted terminals.

The terminals answer like the agent does (a failed test is a ``failed`` command with the
checks in its output); the page must show what the checks found, not only that the run
ended.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import BrokerLogin, MqttPublisher
from posfleet.contract import CommandStatus
from posfleet.diagnostics.command_channel import DownlinkCommandSender
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.store.accounts import Role, create_user
from posfleet.store.incidents import list_playbook_runs
from tests.component.test_incidents_page import (
    PASSWORD,
    Client,
    _act,
    _client,
    _csrf,
    _open,
    _page,
    _printer_spec,
    _site_outage,
    _spec,
    html_text,
)
from tests.component.test_playbooks import Answer, ScriptedTerminal
from tests.harness import PrivateBroker


@pytest.fixture
async def engine(sqlite_engine: AsyncEngine) -> AsyncEngine:
    async with sqlite_engine.begin() as conn:
        await create_user(conn, "alice", PASSWORD, Role.SUPPORT)
    return sqlite_engine


@pytest.fixture
async def runner(engine: AsyncEngine, broker: PrivateBroker) -> AsyncIterator[PlaybookRunner]:
    login = BrokerLogin(
        *broker.address_for(broker.central), broker.central.username, broker.central.password
    )
    async with MqttPublisher(login) as downlink:
        await downlink.wait_ready(10)
        yield PlaybookRunner(engine, DownlinkCommandSender(downlink))


@pytest.fixture
async def operator(engine: AsyncEngine, runner: PlaybookRunner) -> AsyncIterator[Client]:
    """A support user on a dashboard that can run playbooks through the real broker."""
    client = await _client(engine, "alice", runner)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def terminals(broker: PrivateBroker) -> Iterator[Callable[[str, Answer], ScriptedTerminal]]:
    made: list[ScriptedTerminal] = []

    def make(terminal_id: str, answer: Answer) -> ScriptedTerminal:
        made.append(ScriptedTerminal(broker, terminal_id, answer))
        return made[-1]

    yield make
    for terminal in made:
        terminal.close()


async def test_playbook_menu_defaults_to_the_rules_playbook(
    operator: Client, engine: AsyncEngine
) -> None:
    printer = await _open(engine, _printer_spec("T-0013"))
    html = await _page(operator, f"/incidents/{printer}")
    assert '<option value="printer_check" selected>Printer check (suggested)</option>' in html
    assert 'value="card_payments_failing" selected' not in html

    clock = await _open(engine, _spec("clock.drift", "clock", "remote_fix", "T-0013"))
    html = await _page(operator, f"/incidents/{clock}")
    assert '<option value="clock_resync" selected>' in html


def _broken_printer(name: str, _args: dict[str, Any]) -> tuple[CommandStatus, dict[str, Any]]:
    assert name == "print_test"
    return CommandStatus.FAILED, {
        "test": "printer",
        "passed": False,
        "detail": "printer no_paper",
        "checks": [
            {"name": "printer", "passed": False, "detail": "printer no_paper, 0 lines left"},
            {"name": "test_line", "passed": False, "detail": "not printed"},
        ],
    }


async def test_a_playbook_that_finds_the_printer_broken_says_so(
    operator: Client,
    engine: AsyncEngine,
    terminals: Callable[[str, Answer], ScriptedTerminal],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    terminal_id = f"PRN-{tmp_path_factory.mktemp('t').name[-6:]}"
    terminals(terminal_id, _broken_printer)
    incident_id = await _open(engine, _printer_spec(terminal_id))

    await _act(operator, incident_id, "playbooks", playbook="printer_check")
    html = await _page(operator, f"/incidents/{incident_id}")
    run = html[html.index('<details class="playbook-run" open') : html.index("</details>")]
    assert 'data-outcome="fault found"' in run
    assert '<span class="badge bad">fault found</span>' in run
    assert "succeeded" not in html
    assert "The printer cannot print a test page." in run
    # The step's finding is what the printer reported; the remedy says what to do.
    assert '<td class="finding">printer no_paper, 0 lines left; not printed</td>' in run
    assert "<li>Reload the paper roll and close the cover</li>" in run
    # One line per run on the timeline, not the run and its note again.
    assert "Playbook by" not in html
    assert html.count("Playbook <b>Printer check</b>") == 1


def _host_down(name: str, _args: dict[str, Any]) -> tuple[CommandStatus, dict[str, Any]]:
    if name == "host_ping":
        return CommandStatus.FAILED, {
            "passed": False,
            "detail": "acquirer host unreachable",
            "checks": [
                {"name": "host", "passed": False, "detail": "no connection to the acquirer host"}
            ],
        }
    return CommandStatus.OK, {"passed": True, "detail": "reader ok"}


async def test_a_fleet_playbook_runs_on_every_terminal_or_a_chosen_one(
    operator: Client,
    engine: AsyncEngine,
    terminals: Callable[[str, Answer], ScriptedTerminal],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tag = tmp_path_factory.mktemp("f").name[-6:]
    ids = [f"FLT{k}-{tag}" for k in range(3)]
    for terminal_id in ids:
        terminals(terminal_id, _host_down)
    fleet, children = await _site_outage(engine, ids)

    html = await _page(operator, f"/incidents/{fleet}")
    assert '<option value="card_payments_failing" selected>' in html
    assert '<option value="*" selected>all 3 affected terminals</option>' in html

    await _act(operator, fleet, "playbooks", playbook="card_payments_failing", terminal="*")
    html = await _page(operator, f"/incidents/{fleet}")
    assert html.count('data-outcome="fault found"') == 3
    assert html.count('<details class="playbook-run" open') == 3, "three runs are shown whole"
    assert html.count("no connection to the acquirer host") == 3
    for terminal_id in ids:
        assert f"Card payments failing on <code>{terminal_id}</code>" in html
    async with engine.connect() as conn:
        for child in children:
            assert len(await list_playbook_runs(conn, child)) == 1

    await _act(operator, fleet, "playbooks", playbook="printer_check", terminal=ids[1])
    async with engine.connect() as conn:
        assert len(await list_playbook_runs(conn, children[1])) == 2
        assert len(await list_playbook_runs(conn, children[0])) == 1

    token = _csrf(html)
    response = await operator.post(
        f"/incidents/{fleet}/playbooks",
        data={"csrf_token": token, "playbook": "self_test", "terminal": "SOMEONE-ELSE"},
        allow_redirects=False,
    )
    assert response.status == 400
    assert "not one of this fleet incident's terminals" in html_text(await response.text())
