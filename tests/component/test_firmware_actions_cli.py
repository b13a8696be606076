"""``posfleet firmware push|actions|cancel`` as ops runs them: SQLite store, real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from posfleet.central.cli import main
from posfleet.contract import Channel, Command, FirmwareOffer, topic
from posfleet.store import create_engine, upgrade_engine
from tests.component.firmware_rows import add_artifact, add_terminal, signed_manifest
from tests.harness import MqttProbe, PrivateBroker


async def _installation(database: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    try:
        await upgrade_engine(engine)
        await add_terminal(engine, "T-CLI-1")
        await add_terminal(engine, "T-CLI-A920", model="A920")
        await add_artifact(engine, signed_manifest("5.3.0"))
    finally:
        await engine.dispose()


@pytest.fixture
def installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker: PrivateBroker
) -> Iterator[MqttProbe]:
    var = tmp_path / "var"
    var.mkdir()
    asyncio.run(_installation(var / "posfleet.db"))
    monkeypatch.setenv("POSFLEET_VAR_DIR", str(var))
    monkeypatch.setenv("POSFLEET_BROKER_URL", broker.central_url)
    monkeypatch.setenv("POSFLEET_BROKER_USERNAME", broker.central.username)
    monkeypatch.setenv("POSFLEET_BROKER_PASSWORD", broker.central.password)
    monkeypatch.setenv("POSFLEET_FIRMWARE__PUBLIC_BASE_URL", "https://fleet.example.com")
    monkeypatch.delenv("POSFLEET_API_TOKEN", raising=False)
    probe = broker.probe(broker.central)
    probe.subscribe(topic("T-CLI-1", Channel.FW_OFFER))
    probe.subscribe(topic("T-CLI-1", Channel.CMD))
    try:
        yield probe
    finally:
        probe.close()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_push_watch_and_cancel_from_the_shell(
    installation: MqttProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _run(
        capsys, "firmware", "push", "pos-os@5.3.0", "--terminals", "T-CLI-1,T-CLI-A920",
        "--window", "01:00-04:00", "--weekdays", "mon-fri", "--deadline", "24h",
        "--reason", "printer fix",
    )  # fmt: skip
    assert code == 2, err
    assert "pos-os@5.3.0 (#1): 1 action(s) created, 1 offered now" in out
    assert "refused T-CLI-A920: wrong_model" in out
    [message] = installation.wait_for_messages(1, topic=topic("T-CLI-1", Channel.FW_OFFER))
    offer = FirmwareOffer.model_validate_json(message.payload)
    assert offer.url.startswith("https://fleet.example.com/firmware/download/")
    assert offer.window.start == "01:00" and offer.window.weekdays == [0, 1, 2, 3, 4]

    code, out, _ = _run(capsys, "firmware", "actions")
    assert code == 0
    assert "T-CLI-1" in out and "pos-os@5.3.0" in out and "offered" in out
    assert "1 action(s), 1 open: offered 1" in out

    code, out, _ = _run(capsys, "firmware", "actions", "--json", "--state", "offered")
    listed = json.loads(out)
    assert [a["terminal_id"] for a in listed["items"]] == ["T-CLI-1"]
    action_id = str(listed["items"][0]["id"])

    code, out, _ = _run(capsys, "firmware", "cancel", action_id, "--reason", "wrong shop")
    assert code == 0 and f"action #{action_id} on T-CLI-1 cancelled" in out
    # The terminal is told through the installation's broker.
    assert "terminal: firmware_cancel sent" in out, out
    [told] = installation.wait_for_messages(1, topic=topic("T-CLI-1", Channel.CMD))
    command = Command.model_validate_json(told.payload)
    assert command.name == "firmware_cancel" and command.args == {"action_id": action_id}
    code, _, err = _run(capsys, "firmware", "cancel", action_id)
    assert code == 1 and "already cancelled" in err

    # Every Action shown is final, so the watch draws once and ends by itself.
    code, out, _ = _run(capsys, "firmware", "actions", "--watch", "--interval", "0.2")
    assert code == 0 and "cancelled" in out and "0 open" in out


def test_refusals_and_mistakes_are_one_line_each(
    installation: MqttProbe, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = _run(capsys, "firmware", "push", "pos-os@5.3.0", "--terminals", "T-CLI-A920")
    assert code == 1 and "refused T-CLI-A920: wrong_model" in out
    code, _, err = _run(capsys, "firmware", "push", "pos-os@9.9.9", "--terminals", "T-CLI-1")
    assert code == 1 and "no artifact pos-os@9.9.9" in err
    code, _, err = _run(
        capsys, "firmware", "push", "pos-os@5.3.0", "--terminals", "T-CLI-1", "--window", "late"
    )
    assert code == 1 and "HH:MM-HH:MM" in err
    code, _, err = _run(capsys, "firmware", "actions", "--state", "stuck")
    assert code == 1 and "--state takes" in err
    code, _, err = _run(capsys, "firmware", "actions", "--server", "http://127.0.0.1:9")
    assert code == 1 and "POSFLEET_API_TOKEN" in err
    assert installation.received() == []
