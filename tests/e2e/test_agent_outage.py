"""A 30 s broker outage loses nothing: every report and event arrives once, in seq order.

Two terminals share one outage (it is the slow part): one agent runs throughout, the
other is killed with SIGKILL in the middle of the outage and started again. Faults are
injected into both simulated terminals while the broker is down. A subscriber with a
persistent session must then see, per terminal, seq 0, 1, 2 ... with no gap and no repeat.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.contract import Channel, Topic, terminal_filter
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import FaultName, SimulatedTerminal
from tests.harness import MqttProbe, PrivateBroker, async_wait_for

OUTAGE_S = 30.0


def _outbox(state_dir: Path) -> tuple[int, int]:
    """(pending entries, next seq) of an agent's outbox, read without disturbing it."""
    path = state_dir / "outbox.sqlite3"
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        (pending,) = db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        (next_seq,) = db.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()
    finally:
        db.close()
    return int(pending), int(next_seq)


def _seqs(probes: list[MqttProbe], terminal_id: str) -> list[int]:
    """The seq of every health report and fault event of one terminal, in arrival order."""
    seqs = []
    for message in [m for probe in probes for m in probe.received()]:
        parsed = Topic.parse(message.topic)
        if parsed.terminal_id == terminal_id and parsed.channel in (Channel.HEALTH, Channel.EVENT):
            seqs.append(json.loads(message.payload)["seq"])
    return seqs


def _event_codes(probes: list[MqttProbe], terminal_id: str) -> set[str]:
    return {
        json.loads(m.payload)["code"]
        for probe in probes
        for m in probe.received()
        if m.topic.endswith(f"/{terminal_id}/event")
    }


def _subscriber(broker: PrivateBroker, client_id: str, ids: list[str]) -> MqttProbe:
    probe = MqttProbe(
        broker.central_host,
        broker.central_port,
        broker.central,
        client_id=client_id,
        clean_start=False,
        session_expiry=3600,
    ).connect()
    for terminal_id in ids:
        probe.subscribe(terminal_filter(terminal_id))
    return probe


async def _spawn(env: dict[str, str], log_file: Path) -> asyncio.subprocess.Process:
    with log_file.open("ab") as sink:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posfleet.agent.cli", "run", env=env, stdout=sink, stderr=sink
        )


async def test_outage_with_and_without_a_killed_agent_loses_and_repeats_nothing(
    fresh_broker: PrivateBroker, tmp_path: Path
) -> None:
    broker = fresh_broker
    steady_id, killed_id = "OUT-STEADY", "OUT-KILLED"
    steady_creds = broker.provision_terminal(steady_id)
    killed_creds = broker.provision_terminal(killed_id)
    steady_dir, killed_dir = tmp_path / "steady", tmp_path / "killed"
    steady_terminal = SimulatedTerminal("SN-STEADY", seed=11)
    killed_terminal = SimulatedTerminal("SN-KILLED", seed=12)
    subscriber_id = f"outage-subscriber-{tmp_path.name[-8:]}"
    # The subscriber leaves before the outage and comes back after it: its persistent
    # session must hold everything published meanwhile.
    before = _subscriber(broker, subscriber_id, [steady_id, killed_id])
    stop_steady = asyncio.Event()
    agent_log = tmp_path / "killed-agent.log"

    async with serve_pty(steady_terminal) as steady_port, serve_pty(killed_terminal) as port:
        settings = AgentSettings(
            terminal_id=steady_id,
            broker_url=broker.url,
            password=steady_creds.password,
            serial_url=steady_port,
            health_interval_s=1,
            fault_poll_s=0.5,
            keepalive_s=5,
            reconnect_max_s=2,
            state_dir=steady_dir,
        )
        steady = asyncio.create_task(run_agent(settings, stop_steady))
        env = dict(os.environ)
        env.update(
            POSFLEET_AGENT_TERMINAL_ID=killed_id,
            POSFLEET_AGENT_PASSWORD=killed_creds.password,
            POSFLEET_AGENT_BROKER_URL=broker.url,
            POSFLEET_AGENT_SERIAL_URL=port,
            POSFLEET_AGENT_HEALTH_INTERVAL_S="1",
            POSFLEET_AGENT_FAULT_POLL_S="0.5",
            POSFLEET_AGENT_KEEPALIVE_S="5",
            POSFLEET_AGENT_RECONNECT_MAX_S="2",
            POSFLEET_AGENT_STATE_DIR=str(killed_dir),
        )
        killed = await _spawn(env, agent_log)
        try:
            await async_wait_for(
                lambda: (
                    len(_seqs([before], steady_id)) >= 3 and len(_seqs([before], killed_id)) >= 3
                ),
                timeout=20,
                description="both agents reporting before the outage",
            )
            before.close()
            broker.stop()
            outage_started = time.monotonic()

            steady_terminal.inject(FaultName.PAPER_OUT)
            killed_terminal.inject(FaultName.HOST_DOWN)
            await async_wait_for(
                lambda: _outbox(killed_dir)[0] >= 8,
                timeout=OUTAGE_S / 2,
                description="the killed agent buffering reports and its event",
            )
            killed.send_signal(signal.SIGKILL)
            await killed.wait()
            killed = await _spawn(env, agent_log)
            killed_terminal.inject(FaultName.TAMPER)
            steady_terminal.inject(FaultName.COVER_OPEN)

            # The outage itself is the scenario: it lasts its 30 s whatever we poll.
            await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - outage_started)))
            buffered = {steady_id: _outbox(steady_dir)[0], killed_id: _outbox(killed_dir)[0]}
            assert all(count >= 20 for count in buffered.values()), buffered
            broker.start()

            await async_wait_for(
                lambda: _outbox(steady_dir)[0] == 0 and _outbox(killed_dir)[0] == 0,
                timeout=30,
                description="both outboxes drained after the broker came back",
            )
        finally:
            stop_steady.set()
            await steady
            if killed.returncode is None:
                killed.send_signal(signal.SIGTERM)
                await asyncio.wait_for(killed.wait(), 10)

    expected = {steady_id: _outbox(steady_dir)[1], killed_id: _outbox(killed_dir)[1]}
    after = _subscriber(broker, subscriber_id, [steady_id, killed_id])
    both = [before, after]
    try:
        await async_wait_for(
            lambda: all(len(_seqs(both, t)) >= n for t, n in expected.items()),
            timeout=15,
            description=f"every report and event at the subscriber ({expected})",
        )
        for terminal_id, next_seq in expected.items():
            assert _seqs(both, terminal_id) == list(range(next_seq)), terminal_id
        assert {"printer.no_paper", "printer.cover_open"} <= _event_codes(both, steady_id)
        assert {"network.host_unreachable", "tamper.detected"} <= _event_codes(both, killed_id)
    finally:
        after.close()


pytestmark = pytest.mark.e2e
