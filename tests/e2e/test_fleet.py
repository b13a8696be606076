"""The fleet simulator runs many terminal+agent pairs in one process, on one thread."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest

from posfleet.contract import Channel, Topic, all_terminals_filter
from posfleet.simulator.fleet import FleetOptions, FleetRun, SerialMode, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.terminal_model import FaultName
from tests.harness import PrivateBroker, async_wait_for

SIZE = 40


@pytest.mark.parametrize("serial", [SerialMode.MEMORY, SerialMode.PTY])
async def test_a_fleet_reports_faults_and_goes_offline_cleanly_without_a_thread_per_agent(
    broker: PrivateBroker, tmp_path: Path, serial: SerialMode
) -> None:
    size = SIZE if serial is SerialMode.MEMORY else 5
    prefix = f"FL{serial.value[0].upper()}-{tmp_path.name[-6:]}"
    ids = [f"{prefix}-{i:03d}" for i in range(size)]
    credentials = broker.auth.add_terminals(ids)
    broker.process.reload()
    broker.wait_accepts(credentials[-1])
    terminals = [
        FleetTerminal(terminal_id=c.username, password=c.password, seed=i)
        for i, c in enumerate(credentials)
    ]
    probe = broker.probe(broker.central)
    probe.subscribe(all_terminals_filter())

    def ours(channel: Channel) -> list[tuple[str, dict[str, object]]]:
        found = []
        for message in probe.received():
            parsed = Topic.parse(message.topic)
            if parsed.terminal_id in ids and parsed.channel is channel:
                found.append((parsed.terminal_id, json.loads(message.payload)))
        return found

    options = FleetOptions(
        broker_url=broker.url,
        health_interval_s=1,
        fault_poll_s=0.5,
        state_dir=tmp_path / "fleet",
        serial=serial,
        start_spread_s=1.0,
    )
    stop = asyncio.Event()
    run = FleetRun()
    threads_before = threading.active_count()
    fleet = asyncio.create_task(run_fleet(terminals, options, stop, run=run))
    try:
        await async_wait_for(
            lambda: {t for t, _ in ours(Channel.HEALTH)} == set(ids),
            timeout=20,
            description="health from every terminal of the fleet",
        )
        # The agents' uplinks run on this loop: no network thread per agent.
        assert threading.active_count() - threads_before < 10
        run.terminals[ids[0]].inject(FaultName.PAPER_OUT)
        await async_wait_for(
            lambda: any(
                t == ids[0] and e["code"] == "printer.no_paper" for t, e in ours(Channel.EVENT)
            ),
            timeout=10,
            description="the injected fault as an event",
        )
    finally:
        stop.set()
        await fleet

    await async_wait_for(
        lambda: {t for t, s in ours(Channel.STATE) if s["online"] is False} == set(ids),
        timeout=10,
        description="every agent saying offline on the way out",
    )
    probe.close()


pytestmark = pytest.mark.e2e
