"""The fleet simulator: N simulated terminals, each with a real agent, in one process.

Each terminal is a :class:`SimulatedTerminal` served on its own pty; its agent opens that
pty exactly as it would open ``/dev/ttyUSB0`` and talks MQTT to the broker with the
terminal's own credentials. Everything shares one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.simulator.fleet_file import FleetFile, FleetTerminal, load_fleet_file
from posfleet.simulator.serial_endpoint import serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal

log = logging.getLogger(__name__)

__all__ = ["FleetFile", "FleetOptions", "load_fleet_file", "run_fleet"]

START_SPREAD_S = 5.0
"""Agents start spread over this many seconds, as a real fleet does, not all at once."""


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How every simulated terminal's agent is configured."""

    broker_url: str
    health_interval_s: int = 60
    keepalive_s: int = 30
    state_dir: Path = Path("var/simulate")
    fault_poll_s: float = 5.0


def agent_settings(
    terminal: FleetTerminal, options: FleetOptions, serial_url: str
) -> AgentSettings:
    """The agent settings for one simulated terminal."""
    return AgentSettings(
        terminal_id=terminal.terminal_id,
        broker_url=options.broker_url,
        password=terminal.password,
        serial_url=serial_url,
        keepalive_s=options.keepalive_s,
        health_interval_s=options.health_interval_s,
        fault_poll_s=min(options.fault_poll_s, options.health_interval_s),
        state_dir=options.state_dir / terminal.terminal_id,
        site_id=terminal.site_id,
        timezone=terminal.timezone,
    )


async def _run_one(
    terminal: FleetTerminal, options: FleetOptions, stop: asyncio.Event, delay: float
) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay)
        return
    except TimeoutError:
        pass
    model = SimulatedTerminal(
        f"SN{terminal.seed:08d}", seed=terminal.seed, merchant_id=terminal.merchant_id
    )
    async with AsyncExitStack() as stack:
        port = await stack.enter_async_context(serve_pty(model, seed=terminal.seed))
        await run_agent(agent_settings(terminal, options, port), stop, durable=False)


async def run_fleet(
    terminals: list[FleetTerminal], options: FleetOptions, stop: asyncio.Event
) -> None:
    """Run every terminal and its agent until ``stop`` is set."""
    if not terminals:
        raise ValueError("the fleet has no terminals")
    spread = START_SPREAD_S / max(1, len(terminals))
    log.info("starting %d simulated terminals against %s", len(terminals), options.broker_url)
    async with asyncio.TaskGroup() as tasks:
        for i, terminal in enumerate(terminals):
            tasks.create_task(
                _run_one(terminal, options, stop, i * spread), name=terminal.terminal_id
            )
    log.info("simulated fleet stopped")
