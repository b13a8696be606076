"""The fleet simulator: N simulated terminals, each with a real agent, in one process.

Each terminal is a :class:`SimulatedTerminal`; its agent talks MQTT to the broker with the
terminal's own credentials. Everything shares one event loop and one thread: the agent's
uplink drives paho from the loop (no network thread per agent), which is what lets one
process carry a thousand terminals.

Two serial modes:

- ``pty`` (the default, for demos): the terminal is served on its own pty and the agent
  opens it exactly as it would open ``/dev/ttyUSB0``, framing, ACKs and all;
- ``memory`` (for load tests): the agent's driver talks to the terminal's responder in
  process, skipping the serial framing, so the load is the agent and the broker alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from posfleet.agent.runner import run_agent
from posfleet.agent.serial.apdu import Apdu
from posfleet.agent.settings import AgentSettings
from posfleet.simulator.demo_story import play_story
from posfleet.simulator.fleet_file import FleetFile, FleetTerminal, load_fleet_file
from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.scenario import Scenario
from posfleet.simulator.serial_endpoint import LinkFaults, serve_pty
from posfleet.simulator.terminal_model import SimulatedTerminal

log = logging.getLogger(__name__)

__all__ = [
    "FleetFile",
    "FleetOptions",
    "InProcessLink",
    "SerialMode",
    "load_fleet_file",
    "run_fleet",
]

START_SPREAD_S = 5.0
"""Agents start spread over this many seconds, as a real fleet does, not all at once."""
FIRMWARE_HEALTH_WINDOW_S = 30.0
"""How long a simulated terminal runs new firmware before its agent confirms it (a real
agent waits 5 minutes by default); the time lapse shortens it like the agents' other
firmware waits."""


class SerialMode(StrEnum):
    """How each agent reaches its simulated terminal."""

    PTY = "pty"
    MEMORY = "memory"


@dataclass(frozen=True, slots=True)
class FleetOptions:
    """How every simulated terminal's agent is configured."""

    broker_url: str
    health_interval_s: int = 60
    keepalive_s: int = 30
    state_dir: Path = Path("var/simulate")
    fault_poll_s: float = 5.0
    serial: SerialMode = SerialMode.PTY
    start_spread_s: float = START_SPREAD_S
    reconnect_max_s: float = 60.0
    scenario: Scenario | None = None
    demo_story: bool = False
    speed: float = 1.0
    """Time lapse: the terminals' clocks (and the demo story) run this many times faster;
    the agents' firmware waits (health window, busy retries) are that much shorter."""
    firmware_trusted_keys: dict[str, Path] = field(default_factory=dict)
    """Release keys the agents trust for firmware (the fleet file's), by key id."""


@dataclass
class FleetRun:
    """The simulated terminals of a running fleet, by id, to inject faults or seed logs."""

    terminals: dict[str, SimulatedTerminal] = field(default_factory=dict)


class InProcessLink:
    """A :class:`~posfleet.agent.serial.link.Link` straight into a terminal's responder.

    Unlike the test ``FakeLink`` it keeps no record of requests, so it can run for days.
    """

    def __init__(self, responder: MaintenanceResponder) -> None:
        self.responder = responder
        self.requests = 0

    async def request(self, apdu: Apdu, *, reply_timeout: float) -> Apdu:
        """The responder's reply to ``apdu``."""
        self.requests += 1
        return self.responder.handle(apdu)


def agent_settings(
    terminal: FleetTerminal, options: FleetOptions, serial_url: str
) -> AgentSettings:
    """The agent settings for one simulated terminal."""
    health_window_s = FIRMWARE_HEALTH_WINDOW_S / options.speed
    return AgentSettings(
        terminal_id=terminal.terminal_id,
        broker_url=options.broker_url,
        password=terminal.password,
        serial_url=serial_url,
        keepalive_s=options.keepalive_s,
        health_interval_s=options.health_interval_s,
        fault_poll_s=min(options.fault_poll_s, options.health_interval_s),
        state_dir=options.state_dir / terminal.terminal_id,
        driver=options.scenario.terminal.protocol if options.scenario else "maintenance",
        site_id=terminal.site_id,
        merchant_name=terminal.merchant_name,
        site_name=terminal.site_name,
        timezone=terminal.timezone,
        reconnect_min_s=min(1.0, options.reconnect_max_s),
        reconnect_max_s=options.reconnect_max_s,
        firmware_trusted_keys=options.firmware_trusted_keys,
        firmware_health_window_s=health_window_s,
        firmware_health_poll_s=min(5.0, health_window_s / 5),
        firmware_busy_retry_s=30.0 / options.speed,
        firmware_window_recheck_s=60.0 / options.speed,
    )


def time_lapse_clock(speed: float) -> Callable[[], float]:
    """A monotonic clock that runs ``speed`` times faster than real time from now on.

    Simulated terminals built on it sell, print and drain their batteries ``speed``
    times faster; the agents and the central service keep real time.
    """
    if speed <= 0:
        raise ValueError(f"the simulation speed must be above 0, not {speed}")
    if speed == 1:
        return time.monotonic
    origin = time.monotonic()
    return lambda: origin + (time.monotonic() - origin) * speed


def simulated_terminal(
    terminal: FleetTerminal,
    scenario: Scenario | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> SimulatedTerminal:
    """The simulated hardware of one fleet terminal (reproducible from its id and seed).

    With a ``scenario`` the terminal is built as its ``[terminal]`` table says; its events
    are scheduled when the terminal's line is up (see :func:`_run_one`).
    """
    # The serial number follows from the terminal id, not the seed: two fleets on one
    # broker reuse seeds, and the centre refuses one device under two terminal ids.
    serial = "SN" + hashlib.sha256(terminal.terminal_id.encode()).hexdigest()[:16].upper()
    setup = scenario.terminal.model_dump() if scenario is not None else {}
    return SimulatedTerminal(
        serial, seed=terminal.seed, merchant_id=terminal.merchant_id, clock=clock, **setup
    )


async def _run_one(
    terminal: FleetTerminal,
    model: SimulatedTerminal,
    options: FleetOptions,
    stop: asyncio.Event,
    delay: float,
) -> None:
    try:
        await asyncio.wait_for(stop.wait(), delay)
        return
    except TimeoutError:
        pass
    if options.serial is SerialMode.MEMORY:
        if options.scenario is not None:
            options.scenario.install(model)
        link = InProcessLink(MaintenanceResponder(model))
        settings = agent_settings(terminal, options, "memory://")
        await run_agent(settings, stop, durable=False, link=link)
        return
    async with AsyncExitStack() as stack:
        faults = LinkFaults()
        if options.scenario is not None:
            options.scenario.install(model, faults)
        port = await stack.enter_async_context(serve_pty(model, faults=faults, seed=terminal.seed))
        await run_agent(agent_settings(terminal, options, port), stop, durable=False)


async def run_fleet(
    terminals: list[FleetTerminal],
    options: FleetOptions,
    stop: asyncio.Event,
    *,
    run: FleetRun | None = None,
) -> None:
    """Run every terminal and its agent until ``stop`` is set.

    Pass ``run`` to reach the simulated terminals while the fleet runs.
    """
    if not terminals:
        raise ValueError("the fleet has no terminals")
    run = run if run is not None else FleetRun()
    clock = time_lapse_clock(options.speed)
    spread = options.start_spread_s / max(1, len(terminals))
    log.info(
        "starting %d simulated terminals (%s serial) against %s",
        len(terminals),
        options.serial.value,
        options.broker_url,
    )
    async with asyncio.TaskGroup() as tasks:
        for i, terminal in enumerate(terminals):
            model = simulated_terminal(terminal, options.scenario, clock)
            run.terminals[terminal.terminal_id] = model
            tasks.create_task(
                _run_one(terminal, model, options, stop, i * spread), name=terminal.terminal_id
            )
        if options.demo_story:
            story = play_story(terminals, run.terminals, stop, speed=options.speed)
            tasks.create_task(story, name="demo-story")
    log.info("simulated fleet stopped")
