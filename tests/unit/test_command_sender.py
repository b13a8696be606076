"""Playbooks' commands through the broker bridge's downlink, with its in-memory fake."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from posfleet.broker_bridge.downlink import MemoryPublisher
from posfleet.contract import Channel, Command, CommandResult, CommandStatus, utcnow
from posfleet.diagnostics.command_channel import DownlinkCommandSender
from posfleet.diagnostics.errors import CommandTimeoutError


def _ok(_terminal_id: str, command: Command) -> CommandResult:
    return CommandResult(id=command.id, status=CommandStatus.OK, output={"pong": 1}, ts=utcnow())


async def test_a_command_goes_out_valid_until_its_deadline_and_its_result_comes_back() -> None:
    downlink = MemoryPublisher(answer=_ok)
    result = await DownlinkCommandSender(downlink).send(
        "T-1", "host_ping", {"host": "acquirer"}, issued_by="user:olga", timeout_s=30
    )
    assert result.status is CommandStatus.OK and result.output == {"pong": 1}
    [(terminal_id, channel, command)] = downlink.sent
    assert (terminal_id, channel) == ("T-1", Channel.CMD)
    assert isinstance(command, Command) and command.id == result.id
    assert (command.name, command.args, command.issued_by) == (
        "host_ping",
        {"host": "acquirer"},
        "user:olga",
    )
    assert command.expires_at - command.issued_at == timedelta(seconds=30)


@pytest.mark.parametrize("broker_away", [False, True])
async def test_a_command_nobody_answers_times_out_at_its_deadline(broker_away: bool) -> None:
    downlink = MemoryPublisher(failing=broker_away)
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError) as timed_out:
        await DownlinkCommandSender(downlink).send(
            "T-1", "self_test", {}, issued_by="user:olga", timeout_s=0.05
        )
    assert time.monotonic() - started >= 0.05
    assert timed_out.value.terminal_id == "T-1"
    assert [c.id for c in downlink.commands()] == (
        [] if broker_away else [timed_out.value.command_id]
    )
