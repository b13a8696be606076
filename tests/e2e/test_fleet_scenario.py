"""``posfleet simulate --scenario``: a scenario file's faults reach the centre."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posfleet.simulator.fleet import FleetOptions, run_fleet
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.scenario import parse_scenario
from tests.harness import PrivateBroker, async_wait_for
from tests.harness.central_service import start_central

pytestmark = pytest.mark.e2e

SCENARIO = """
name = "printer runs dry"

[[events]]
at = "0s"
inject = "paper_out"

[[events]]
at = "0s"
inject = "host_down"
"""


async def test_scenario_faults_show_up_in_the_fleet_registry(
    broker: PrivateBroker, tmp_path: Path, sqlite_url: str
) -> None:
    ids = [f"SCN-{i}-{tmp_path.name[-6:]}" for i in range(2)]
    terminals = [
        FleetTerminal(terminal_id=t, password=broker.provision_terminal(t).password, seed=i)
        for i, t in enumerate(ids)
    ]
    options = FleetOptions(
        broker_url=broker.url,
        health_interval_s=1,
        fault_poll_s=1,
        state_dir=tmp_path / "fleet",
        start_spread_s=0.1,
        scenario=parse_scenario(SCENARIO, "test"),
    )
    stop = asyncio.Event()
    async with start_central(broker, tmp_path / "c", sqlite_url) as central:
        fleet = asyncio.create_task(run_fleet(terminals, options, stop))
        try:

            async def all_dry_and_cut_off() -> bool:
                listed = await central.terminals()
                healths = [listed.get(t, {}).get("health") or {} for t in ids]
                return all(
                    h.get("printer", {}).get("status") == "no_paper"
                    and h.get("network", {}).get("host_reachable") is False
                    for h in healths
                )

            await async_wait_for(all_dry_and_cut_off, timeout=20, description="scenario faults")
        finally:
            stop.set()
            await fleet
