"""The agent between an unmodified cash register and its terminal: ZVT pass-through on ptys.

The ECR is the test client written from the specification; the terminal is the simulator.
Every byte is compared on both sides, the agent's counters are read from its health report,
and a SIGKILLed agent is checked for what the cash register sees.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import tty
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from posfleet.agent.daemon import Agent, AgentIdentity
from posfleet.agent.drivers import ZvtDriver
from posfleet.agent.outbox import Outbox
from posfleet.agent.passthrough import SerialPassthrough, add_ecr_block
from posfleet.agent.uplink import MemoryUplink
from posfleet.contract import Channel
from posfleet.simulator import SimulatedTerminal, serve_pty
from posfleet.simulator import serial_endpoint as endpoint
from posfleet.simulator.zvt_ecr_cards import CardPresentation, Outcome
from posfleet.simulator.zvt_ecr_session import ecr_session
from tests.harness import async_wait_for
from tests.harness.zvt_ecr_client import EcrClient, EcrError, Exchange, TtyTransport

IDLE_S = 0.05
CONFIG = 0x8A  # intermediate status, the ECR prints the payment receipt line by line


def outcome_of(i: int) -> CardPresentation:
    if i % 10 == 3:
        return CardPresentation(outcome=Outcome.DECLINED, result_code=0x05)
    if i % 10 == 7:
        return CardPresentation(outcome=Outcome.DECLINED, result_code=0x51)
    if i % 25 == 11:
        return CardPresentation(outcome=Outcome.UNREADABLE)
    return CardPresentation(card_type="visa" if i % 2 else "girocard")


@contextmanager
def ecr_pty() -> Iterator[tuple[int, str]]:
    """A pty pair: the ECR on the master, the agent opens the slave's path."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


class TerminalWire:
    """What the simulated terminal received and sent, chunk by chunk, with times."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.chunks: list[tuple[str, float, bytes]] = []
        original = endpoint.TerminalSession.receive

        def receive(session: endpoint.TerminalSession, data: bytes) -> bytes:
            self.chunks.append(("in", time.monotonic(), data))
            reply = original(session, data)
            self.chunks.append(("out", time.monotonic(), reply))
            return reply

        monkeypatch.setattr(endpoint.TerminalSession, "receive", receive)

    def outside(self, direction: str, windows: list[tuple[float, float]]) -> bytes:
        return b"".join(
            data
            for d, t, data in self.chunks
            if d == direction and not any(a <= t <= b for a, b in windows)
        )


@asynccontextmanager
async def agent_in_between(
    terminal_path: str, ecr_path: str, tmp_path: Path
) -> AsyncIterator[tuple[SerialPassthrough, MemoryUplink]]:
    uplink = MemoryUplink()
    outbox = Outbox(tmp_path / "outbox.db", durable=False)
    async with SerialPassthrough(ecr_path, terminal_path, idle_s=IDLE_S, ack_timeout=1.0) as pt:
        agent = Agent(
            AgentIdentity("T-PT", boot_id="b1"),
            ZvtDriver(pt.link, reply_timeout=2.0, completion_timeout=2.0),
            uplink,
            outbox,
            health_interval_s=0.2,
            fault_poll_s=0.2,
            observed=add_ecr_block(pt),
        )
        task = asyncio.create_task(agent.run())
        try:
            yield pt, uplink
        finally:
            agent.stop()
            await task
            outbox.close()


def trading_day(client: EcrClient) -> list[Exchange]:
    exchanges = [client.register("000000", CONFIG)]
    for i in range(100):
        # Every 20th cashier waits before answering "insert card": the line is idle
        # mid-payment, where the agent must not talk.
        exchanges.append(client.pay(100 + i, answer_delay_s=0.08 if i % 20 == 5 else 0.0))
        if i % 25 == 24:
            time.sleep(0.15)  # a quiet moment in the shop: the agent may poll now
    exchanges.append(client.end_of_day("000000"))
    return exchanges


def ecr_health(uplink: MemoryUplink) -> list[dict[str, Any]]:
    return [
        json.loads(p)["metrics"]["ecr"]
        for c, p in uplink.published
        if c is Channel.HEALTH and json.loads(p)["metrics"].get("ecr")
    ]


async def test_hundred_payments_pass_through_unchanged_and_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wire = TerminalWire(monkeypatch)
    terminal = SimulatedTerminal("ZVT-52500117", protocol="zvt", transactions_per_hour=0)
    ecr_session(terminal).present(*(outcome_of(i) for i in range(100)))
    with ecr_pty() as (master, ecr_path):
        async with (
            serve_pty(terminal) as terminal_path,
            agent_in_between(terminal_path, ecr_path, tmp_path) as (pt, uplink),
        ):
            client = EcrClient(TtyTransport(master), t3_s=2.0)
            exchanges = await asyncio.to_thread(trading_day, client)
            await async_wait_for(
                lambda: any(e.get("last_end_of_day") for e in ecr_health(uplink)),
                timeout=5,
                description="a health report after the End of Day",
            )
    payments = exchanges[1:-1]
    # No payment failed on the line: each ended with the terminal's own verdict.
    assert all(p.result_code is not None and p.messages for p in payments)
    assert exchanges[0].completed and exchanges[-1].completed
    # Byte for byte, both ways: the agent's own exchanges are the only extra traffic.
    own = [w for w in pt.own_exchanges if w[1] == w[1]]  # ended ones (not NaN)
    assert own, "the agent never polled in the idle gaps"
    assert wire.outside("in", own) == client.bytes_sent()
    assert wire.outside("out", own) == client.bytes_received()
    # Its own Status Enquiries only in idle gaps, never once an ECR exchange is under way
    # (one that starts while the agent's is on the line waits for it: a millisecond).
    for start, end in own:
        assert not any(e.accepted <= start <= e.ended for e in exchanges), (start, end)
    delayed = sum(1 for e in exchanges for a, b in own if e.started <= b and a <= e.accepted)
    report = ecr_health(uplink)[-1]
    declines = {"05": sum(1 for i in range(100) if i % 10 == 3)}
    declines["51"] = sum(1 for i in range(100) if i % 10 == 7)
    read_errors = sum(1 for i in range(100) if i % 25 == 11 and i % 10 not in (3, 7))
    assert report["transactions"] == 100
    assert report["declined_by_code"] == declines
    assert report["read_errors"] == read_errors
    assert report["approved"] == 100 - sum(declines.values()) - read_errors
    assert report["transaction_open"] is False
    approved_cents = sum(p.amount_cents or 0 for p in payments if p.result_code == 0)
    assert report["approved_cents"] == approved_cents
    assert report["last_end_of_day"] == {"total_cents": approved_cents, "result_code": "00"}
    assert 1 <= report["own_status_enquiries"] <= len(own)  # own windows hold Diagnoses too
    rtts = [rt for p in payments for rt in p.round_trips_s]
    print(
        f"\npass-through: median added latency per forwarded chunk "
        f"{statistics.median(pt.forward_delays_s) * 1000:.3f} ms (max "
        f"{max(pt.forward_delays_s) * 1000:.3f} ms over {len(pt.forward_delays_s)} chunks); "
        f"ECR command round trip through the agent, median "
        f"{statistics.median(rtts) * 1000:.2f} ms; "
        f"{len(own)} own status enquiries, {delayed} ECR commands waited for one"
    )


def _agent_settings(tmp_path: Path, terminal_path: str, ecr_path: str) -> Path:
    config = tmp_path / "agent.toml"
    config.write_text(
        f"""
terminal_id = "T-KILL"
broker_url = "mqtt://127.0.0.1:9"
serial_url = "{terminal_path}"
driver = "zvt"
zvt_passthrough_ecr_url = "{ecr_path}"
zvt_passthrough_idle_s = 30
health_interval_s = 60
state_dir = "{tmp_path / "state"}"
""",
        encoding="utf-8",
    )
    return config


def _start_agent(config: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSFLEET_AGENT_")}
    return subprocess.Popen(
        [sys.executable, "-m", "posfleet.agent.cli", "run", "-c", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _pay_when_up(client: EcrClient, amount: int, timeout: float = 10.0) -> Exchange:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.pay(amount)
        except EcrError:
            if time.monotonic() > deadline:
                raise


async def test_sigkilled_agent_the_ecr_times_out_then_works_after_restart(
    tmp_path: Path,
) -> None:
    terminal = SimulatedTerminal("ZVT-52500118", protocol="zvt", transactions_per_hour=0)
    with ecr_pty() as (master, ecr_path):
        async with serve_pty(terminal) as terminal_path:
            config = _agent_settings(tmp_path, terminal_path, ecr_path)
            client = EcrClient(TtyTransport(master), t3_s=0.3)
            agent = _start_agent(config)
            try:
                before = await asyncio.to_thread(_pay_when_up, client, 1000)
                agent.send_signal(signal.SIGKILL)
                agent.wait(timeout=5)
                started = time.monotonic()
                with pytest.raises(EcrError, match="no ACK"):
                    await asyncio.to_thread(client.pay, 2000)
                gave_up_after = time.monotonic() - started
                agent = _start_agent(config)
                after = await asyncio.to_thread(_pay_when_up, client, 3000)
            finally:
                agent.kill()
                agent.wait(timeout=5)
    assert before.completed and after.completed
    # The ECR gave up cleanly after its three sends (3 x T3), nothing half-done:
    assert gave_up_after < 3 * 0.3 + 0.5
    # The payment sent while the agent was dead never reached the terminal, not even
    # later (the restarted agent discards what waited on the port): no double charge.
    assert [amount for amount, _ in ecr_session(terminal).payments] == [1000, 3000]
