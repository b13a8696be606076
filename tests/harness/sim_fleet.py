"""A fleet of simulated terminals with real agents that really update their firmware.

Every terminal is a :class:`SimulatedTerminal` served in process (the fleet simulator's
``memory`` serial mode: no pty, no framing) to a real agent that talks to the real broker
with its own credentials and downloads its image from the real central service, all on
the test's event loop. The agents' firmware waits (health window, retries, busy and
window re-checks) are seconds instead of minutes so a rollout of fifty terminals takes
seconds; everything else is the agent as shipped.

Terminals can be added while the fleet runs (a terminal that comes online mid-rollout)
and switched off again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from posfleet.agent.runner import run_agent
from posfleet.agent.settings import AgentSettings
from posfleet.simulator import SimulatedTerminal
from posfleet.simulator.fleet import InProcessLink, time_lapse_clock
from posfleet.simulator.responder import MaintenanceResponder
from tests.harness.firmware_release import ReleaseKey
from tests.harness.private_broker import PrivateBroker

__all__ = ["FleetAgentTimings", "SimFleet", "SimTerminal", "TerminalPlan"]


@dataclass(frozen=True, slots=True)
class FleetAgentTimings:
    """The agents' waits, short enough for a test of many terminals on two cores."""

    health_interval_s: int = 1
    fault_poll_s: float = 0.5
    reconnect_max_s: float = 2.0
    firmware_health_window_s: float = 1.0
    firmware_health_poll_s: float = 0.25
    firmware_boot_timeout_s: float = 30.0
    firmware_retry_min_s: float = 0.2
    firmware_retry_max_s: float = 1.0
    firmware_busy_retry_s: float = 0.25
    firmware_window_recheck_s: float = 0.5


@dataclass(frozen=True, slots=True)
class TerminalPlan:
    """Who a simulated terminal is: its id, shop and the firmware it runs."""

    terminal_id: str
    site_id: str = ""
    merchant_id: str = ""
    timezone: str = "UTC"
    firmware_version: str = "2.4.1"
    portable: bool = True


@dataclass
class SimTerminal:
    """One running terminal: its hardware and its agent."""

    plan: TerminalPlan
    hardware: SimulatedTerminal
    settings: AgentSettings
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    @property
    def terminal_id(self) -> str:
        """The terminal's id."""
        return self.plan.terminal_id

    @property
    def running(self) -> bool:
        """True while its agent runs."""
        return self._task is not None and not self._task.done()

    def power_on(self) -> None:
        """Start the agent (the terminal's state is kept across power cycles)."""
        self._stop = asyncio.Event()
        link = InProcessLink(MaintenanceResponder(self.hardware))
        self._task = asyncio.create_task(
            run_agent(self.settings, self._stop, durable=False, link=link),
            name=f"agent-{self.terminal_id}",
        )

    async def power_off(self) -> None:
        """Stop the agent; it says offline on the way out."""
        if self._task is not None:
            self._stop.set()
            await self._task
            self._task = None


class SimFleet:
    """Simulated terminals with agents trusting ``key``; all switched off on exit.

    ``speed`` runs the terminals' own clocks faster (sales, wear): with
    ``transactions_per_hour`` 360 and speed 10 each terminal serves a cardholder about
    every second. ``settle_every_s`` (real seconds) runs the merchant's end-of-day that
    often, so a terminal that sells is sometimes free to reboot into new firmware.
    """

    def __init__(
        self,
        broker: PrivateBroker,
        work_dir: Path,
        key: ReleaseKey,
        *,
        timings: FleetAgentTimings = FleetAgentTimings(),
        speed: float = 1.0,
        transactions_per_hour: float = 0.0,
        reader_error_rate: float = 0.01,
        settle_every_s: float | None = None,
    ) -> None:
        self.broker = broker
        self.work_dir = work_dir
        self.key = key
        self.timings = timings
        self.transactions_per_hour = transactions_per_hour
        self.reader_error_rate = reader_error_rate
        self.settle_every_s = settle_every_s
        self.terminals: dict[str, SimTerminal] = {}
        self._clock: Callable[[], float] = time_lapse_clock(speed)
        self._seeds = 0
        self._merchant: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SimFleet:
        if self.settle_every_s is not None:
            self._merchant = asyncio.create_task(self._end_of_day(self.settle_every_s))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._merchant is not None:
            self._merchant.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._merchant
        await asyncio.gather(*(t.power_off() for t in self.terminals.values()))

    async def add(self, plans: Iterable[TerminalPlan]) -> list[SimTerminal]:
        """Provision the terminals on the broker and switch them on."""
        plans = list(plans)
        credentials = self.broker.auth.add_terminals([p.terminal_id for p in plans])
        self.broker.process.reload()
        # Mosquitto re-reads its password file after SIGHUP: wait until the last is known.
        await asyncio.to_thread(self.broker.wait_accepts, credentials[-1])
        added = []
        for plan, creds in zip(plans, credentials, strict=True):
            self._seeds += 1
            hardware = SimulatedTerminal(
                f"SN-{plan.terminal_id}",
                seed=self._seeds,
                clock=self._clock,
                portable=plan.portable,
                merchant_id=plan.merchant_id,
                firmware_version=plan.firmware_version,
                transactions_per_hour=self.transactions_per_hour,
                reader_error_rate=self.reader_error_rate,
            )
            t = self.timings
            settings = AgentSettings(
                terminal_id=plan.terminal_id,
                broker_url=self.broker.url,
                password=creds.password,
                serial_url="memory://",
                site_id=plan.site_id,
                timezone=plan.timezone,
                state_dir=self.work_dir / plan.terminal_id,
                health_interval_s=t.health_interval_s,
                fault_poll_s=t.fault_poll_s,
                reconnect_min_s=min(1.0, t.reconnect_max_s),
                reconnect_max_s=t.reconnect_max_s,
                firmware_trusted_keys={self.key.key_id: self.key.public_path},
                firmware_health_window_s=t.firmware_health_window_s,
                firmware_health_poll_s=t.firmware_health_poll_s,
                firmware_boot_timeout_s=t.firmware_boot_timeout_s,
                firmware_retry_min_s=t.firmware_retry_min_s,
                firmware_retry_max_s=t.firmware_retry_max_s,
                firmware_busy_retry_s=t.firmware_busy_retry_s,
                firmware_window_recheck_s=t.firmware_window_recheck_s,
            )
            terminal = SimTerminal(plan, hardware, settings)
            self.terminals[plan.terminal_id] = terminal
            terminal.power_on()
            added.append(terminal)
        return added

    def versions(self) -> dict[str, str]:
        """The firmware each terminal runs, as its hardware says."""
        return {tid: t.hardware.identity.firmware_version for tid, t in self.terminals.items()}

    async def _end_of_day(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)  # the merchant's rhythm, not a synchronisation
            for terminal in self.terminals.values():
                hardware = terminal.hardware
                hardware.advance()
                if not hardware.sale_in_progress:
                    hardware.settle()
