"""Playbooks through the real broker: commands out on ``cmd``, results back on ``cmd/result``.

The terminal end is a scripted MQTT client with the terminal's own credentials (so the
broker's ACL applies as in production); it answers like an agent would, or stays silent.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge.downlink import BrokerLogin, MqttPublisher
from posfleet.contract import Channel, CommandResult, CommandStatus, decode, encode, topic, utcnow
from posfleet.diagnostics.command_channel import CommandSender, DownlinkCommandSender
from posfleet.diagnostics.errors import PlaybookError
from posfleet.diagnostics.playbook_runner import PlaybookRunner
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.incidents import (
    IncidentSpec,
    RunState,
    expire_playbook_runs,
    list_notes,
    list_playbook_runs,
    open_incident,
    start_playbook_run,
)
from tests.harness import PrivateBroker, wait_for

Answer = Callable[[str, dict[str, Any]], tuple[CommandStatus, dict[str, Any]] | None]


class ScriptedTerminal:
    """Answers commands on its ``cmd`` topic with ``answer(name, args)`` (None: silence)."""

    def __init__(self, broker: PrivateBroker, terminal_id: str, answer: Answer) -> None:
        creds = broker.provision_terminal(terminal_id)
        self.terminal_id = terminal_id
        self.answer = answer
        self.commands: list[str] = []
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"scripted-{terminal_id}", protocol=mqtt.MQTTv5
        )
        self._client.username_pw_set(creds.username, creds.password)
        self._client.on_connect = lambda c, *_: c.subscribe(topic(terminal_id, Channel.CMD), qos=1)
        self._client.on_subscribe = lambda *_: self._subscribed.set()
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        wait_for(self._subscribed.is_set, 10, description="terminal subscribed to cmd")

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        command = decode(msg.topic, bytes(msg.payload)).payload
        self.commands.append(command.name)  # type: ignore[attr-defined]
        answer = self.answer(command.name, command.args)  # type: ignore[attr-defined]
        if answer is None:
            return
        status, output = answer
        result = CommandResult(id=command.id, status=status, output=output, ts=utcnow())  # type: ignore[attr-defined]
        self._client.publish(topic(self.terminal_id, Channel.CMD_RESULT), encode(result), qos=1)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def scripted(broker: PrivateBroker) -> Iterator[Callable[[str, Answer], ScriptedTerminal]]:
    made: list[ScriptedTerminal] = []

    def make(terminal_id: str, answer: Answer) -> ScriptedTerminal:
        terminal = ScriptedTerminal(broker, terminal_id, answer)
        made.append(terminal)
        return terminal

    yield make
    for terminal in made:
        terminal.close()


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'playbooks.db'}")
    await upgrade_engine(engine)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sender(broker: PrivateBroker) -> AsyncIterator[CommandSender]:
    login = BrokerLogin(
        *broker.address_for(broker.central), broker.central.username, broker.central.password
    )
    async with MqttPublisher(login) as downlink:
        await downlink.wait_ready(10)
        yield DownlinkCommandSender(downlink)


async def _incident(db: AsyncEngine, terminal_id: str) -> int:
    spec = IncidentSpec(
        rule_id="card_reader.errors",
        title="Card reads failing",
        component="card_reader",
        severity="warning",
        escalation="swap",
        cause="reads fail",
        remedy=["clean the reader"],
        terminal_id=terminal_id,
    )
    async with db.begin() as conn:
        return (await open_incident(conn, spec, now=utcnow()))[0]


async def test_card_payments_playbook_finds_the_broken_reader_and_records_it(
    db: AsyncEngine, sender: CommandSender, scripted: Callable[[str, Answer], ScriptedTerminal]
) -> None:
    def answer(name: str, _args: dict[str, Any]) -> tuple[CommandStatus, dict[str, Any]]:
        if name == "card_reader_test":
            return CommandStatus.OK, {"passed": False, "detail": "reader errors"}
        return CommandStatus.OK, {"passed": True}

    terminal = scripted("PB-READER", answer)
    incident_id = await _incident(db, terminal.terminal_id)
    runner = PlaybookRunner(db, sender)

    run = await runner.run(
        "card_payments_failing", terminal.terminal_id, started_by="alice", incident_id=incident_id
    )

    assert terminal.commands == ["read_health", "card_reader_test", "host_ping"]
    assert run.state is RunState.SUCCEEDED
    assert "card reader fails its self-test" in run.verdict
    assert any("swap the terminal" in step for step in run.remedy)
    assert [s["command"] for s in run.steps] == terminal.commands
    async with db.connect() as conn:
        [note] = await list_notes(conn, incident_id)
        [stored] = await list_playbook_runs(conn, incident_id)
    assert note.kind == "playbook" and "card reader" in note.text
    assert stored.id == run.id and stored.finished_at is not None


async def test_a_silent_terminal_ends_the_run_timed_out_not_in_progress(
    db: AsyncEngine, sender: CommandSender, scripted: Callable[[str, Answer], ScriptedTerminal]
) -> None:
    terminal = scripted("PB-SILENT", lambda _name, _args: None)
    runner = PlaybookRunner(db, sender)

    run = await runner.run("printer_check", terminal.terminal_id, started_by="bob", timeout_s=1.0)

    assert run.state is RunState.TIMED_OUT
    assert "did not answer" in run.verdict
    assert run.finished_at is not None


async def test_rejected_command_fails_the_run_with_the_reason(
    db: AsyncEngine, sender: CommandSender, scripted: Callable[[str, Answer], ScriptedTerminal]
) -> None:
    terminal = scripted("PB-REJECT", lambda _n, _a: (CommandStatus.REJECTED, {}))
    run = await PlaybookRunner(db, sender).run("clock_resync", terminal.terminal_id, started_by="x")
    assert run.state is RunState.FAILED
    assert "rejected sync_clock" in run.verdict


async def test_unknown_playbook_is_refused_and_stale_runs_expire(
    db: AsyncEngine, sender: CommandSender
) -> None:
    with pytest.raises(PlaybookError, match="card_payments_failing"):
        await PlaybookRunner(db, sender).run("nope", "PB-X", started_by="x")
    now = utcnow()
    async with db.begin() as conn:
        await start_playbook_run(
            conn, terminal_id="PB-X", playbook="self_test", started_by="x", now=now, deadline=now
        )
        # A run whose process died is closed by the server-side deadline, never left running.
        assert await expire_playbook_runs(conn, now=now.replace(year=now.year + 1)) == 1
