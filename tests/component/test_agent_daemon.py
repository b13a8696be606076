"""The agent daemon with an in-memory uplink and an in-process terminal: it never wedges."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from posfleet.agent.daemon import Agent, AgentIdentity
from posfleet.agent.drivers import MaintenanceDriver
from posfleet.agent.outbox import Outbox
from posfleet.agent.serial import Apdu, FakeLink, ReplyTimeoutError
from posfleet.agent.uplink import MemoryUplink
from posfleet.contract import Channel
from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.terminal_model import FaultName, SimulatedTerminal
from tests.harness import async_wait_for


class Terminal:
    """A simulated terminal behind a FakeLink that can be unplugged."""

    def __init__(self) -> None:
        self.model = SimulatedTerminal("SN-D", seed=3)
        self.responder = MaintenanceResponder(self.model)
        self.unplugged = False
        self.link = FakeLink(self._answer)

    def _answer(self, request: Apdu) -> Apdu:
        if self.unplugged:
            raise ReplyTimeoutError(1.0)
        return self.responder.handle(request)


@asynccontextmanager
async def running(tmp_path: Path, uplink: MemoryUplink, terminal: Terminal) -> AsyncIterator[Agent]:
    outbox = Outbox(tmp_path / "outbox.db", durable=False)
    agent = Agent(
        AgentIdentity("T-D", boot_id="b1"),
        MaintenanceDriver(terminal.link),
        uplink,
        outbox,
        health_interval_s=0.05,
        fault_poll_s=0.05,
    )
    task = asyncio.create_task(agent.run())
    try:
        yield agent
    finally:
        agent.stop()
        await task
        outbox.close()


def _seqs(uplink: MemoryUplink) -> list[int]:
    return [
        json.loads(p)["seq"] for c, p in uplink.published if c in (Channel.HEALTH, Channel.EVENT)
    ]


def _codes(uplink: MemoryUplink) -> list[str]:
    return [json.loads(p)["code"] for c, p in uplink.published if c is Channel.EVENT]


async def test_reports_wait_out_a_disconnect_and_follow_in_order(tmp_path: Path) -> None:
    uplink, terminal = MemoryUplink(), Terminal()
    async with running(tmp_path, uplink, terminal) as agent:
        await async_wait_for(lambda: len(_seqs(uplink)) >= 2, description="first reports")
        uplink.set_connected(False)
        sent = len(uplink.published)
        terminal.model.inject(FaultName.TAMPER)
        await async_wait_for(lambda: agent.outbox.stats().pending >= 5, description="buffering")
        assert len(uplink.published) <= sent + 1  # at most the report already on its way
        uplink.set_connected(True)
        await async_wait_for(lambda: agent.outbox.stats().pending == 0, description="drained")
    seqs = _seqs(uplink)
    assert seqs == list(range(len(seqs)))
    assert "tamper.detected" in _codes(uplink)


async def test_a_dead_serial_link_is_one_fault_event_and_the_agent_recovers(
    tmp_path: Path,
) -> None:
    uplink, terminal = MemoryUplink(), Terminal()
    async with running(tmp_path, uplink, terminal) as agent:
        await async_wait_for(lambda: len(_seqs(uplink)) >= 1, description="first report")
        terminal.unplugged = True
        await async_wait_for(lambda: "serial_link.no_response" in _codes(uplink))
        reports = agent.reports_stored
        await async_wait_for(lambda: len(terminal.link.requests) > 20, description="retrying")
        assert agent.reports_stored == reports
        terminal.unplugged = False
        await async_wait_for(lambda: agent.reports_stored > reports, description="recovered")
    assert _codes(uplink).count("serial_link.no_response") == 1


async def test_messages_the_broker_refuses_are_counted_and_do_not_block_the_rest(
    tmp_path: Path,
) -> None:
    uplink, terminal = MemoryUplink(refuse=True), Terminal()
    async with running(tmp_path, uplink, terminal) as agent:
        await async_wait_for(lambda: agent.refused >= 3, description="refusals")
        uplink.refuse = False
        await async_wait_for(lambda: len(_seqs(uplink)) >= 3, description="reports again")
        seqs = _seqs(uplink)
        assert seqs == sorted(seqs) and seqs[0] >= 3


async def test_an_unexpected_error_in_a_poll_does_not_stop_the_daemon(tmp_path: Path) -> None:
    uplink, terminal = MemoryUplink(), Terminal()
    broken = {"on": True}
    original = terminal.responder.handle

    def sometimes_broken(request: Apdu) -> Apdu:
        if broken["on"]:
            raise RuntimeError("a bug in the driver")
        return original(request)

    terminal.link.handler = sometimes_broken
    async with running(tmp_path, uplink, terminal) as agent:
        await async_wait_for(lambda: agent.step_errors >= 3, description="errors counted")
        broken["on"] = False
        await async_wait_for(lambda: len(_seqs(uplink)) >= 2, description="reports again")


async def test_commands_are_answered_while_reports_flow(tmp_path: Path) -> None:
    uplink, terminal = MemoryUplink(), Terminal()
    async with running(tmp_path, uplink, terminal):
        uplink.deliver(b'{"id": "x1", "name": "nope"}')
        await async_wait_for(
            lambda: any(c is Channel.CMD_RESULT for c, _ in uplink.published),
            description="a result",
        )
        await async_wait_for(lambda: len(_seqs(uplink)) >= 3, description="reports")
    (result,) = [json.loads(p) for c, p in uplink.published if c is Channel.CMD_RESULT]
    assert result["status"] == "rejected"
    assert uplink.acked == [b'{"id": "x1", "name": "nope"}']
