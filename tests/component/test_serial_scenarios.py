"""Scenario files driving the line itself: noise and a slow link, over a real pty."""

from __future__ import annotations

import time

from posfleet.agent.drivers import MaintenanceDriver
from posfleet.agent.serial import SerialLink
from posfleet.simulator import LinkFaults, SimulatedTerminal, parse_scenario, serve_pty

FAST_T3 = 0.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_line_noise_scenario_still_yields_correct_health() -> None:
    scenario = parse_scenario('[[events]]\nat = "1m"\nlink = { noise = true }\n')
    clock, link_faults = FakeClock(), LinkFaults()
    terminal = SimulatedTerminal("SIM-NOISE", seed=8, clock=clock)
    scenario.install(terminal, link_faults)
    async with (
        serve_pty(terminal, faults=link_faults, seed=3) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        driver = MaintenanceDriver(link)
        await driver.read_health()
        assert link.stats.garbage_bytes == 0
        clock.now = 120
        for step in range(8):
            clock.now += 600 * step
            assert await driver.read_health() == terminal.health()
    assert link_faults.noise and link.stats.garbage_bytes > 0
    assert link.stats.resends == 0


async def test_a_slow_link_scenario_delays_but_delivers() -> None:
    scenario = parse_scenario("[[events]]\nat = 0\nlink = { byte_delay_ms = 2 }\n")
    clock, link_faults = FakeClock(), LinkFaults()
    terminal = SimulatedTerminal("SIM-SLOW", seed=9, clock=clock)
    scenario.install(terminal, link_faults)
    async with (
        serve_pty(terminal, faults=link_faults) as path,
        SerialLink(path, ack_timeout=FAST_T3) as link,
    ):
        driver = MaintenanceDriver(link)
        started = time.monotonic()
        health = await driver.read_health()
        elapsed = time.monotonic() - started
    assert health == terminal.health()
    # The reply frame is ~130 bytes: at 2 ms a byte it cannot arrive in under ~0.2 s.
    assert elapsed >= 0.2
    assert link_faults.byte_delay_s == 0.002
