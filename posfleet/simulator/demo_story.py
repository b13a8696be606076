"""A short storyline of faults for the demo, so the dashboard has problems to show.

In the first minutes one terminal runs out of paper, one card reader starts failing, and
every terminal of one site loses its acquirer host (one fleet incident, not several);
the host comes back and the paper is reloaded later, so incidents also resolve.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.terminal_model import SimulatedTerminal

log = logging.getLogger(__name__)

Select = Callable[[Sequence[FleetTerminal]], list[str]]


def _nth(n: int) -> Select:
    def select(terminals: Sequence[FleetTerminal]) -> list[str]:
        return [terminals[n % len(terminals)].terminal_id]

    return select


def _site_of_nth(n: int) -> Select:
    def select(terminals: Sequence[FleetTerminal]) -> list[str]:
        site = terminals[n % len(terminals)].site_id
        return [t.terminal_id for t in terminals if t.site_id == site]

    return select


@dataclass(frozen=True, slots=True)
class StoryStep:
    """At ``at_s`` seconds after start, inject or clear ``fault`` on the selected terminals."""

    at_s: float
    action: Literal["inject", "clear"]
    fault: FaultName
    select: Select


DEMO_STORY: tuple[StoryStep, ...] = (
    StoryStep(20, "inject", FaultName.PAPER_OUT, _nth(2)),
    StoryStep(35, "inject", FaultName.READER_ERRORS, _nth(6)),
    StoryStep(50, "inject", FaultName.HOST_DOWN, _site_of_nth(0)),
    StoryStep(170, "clear", FaultName.HOST_DOWN, _site_of_nth(0)),
    StoryStep(240, "clear", FaultName.PAPER_OUT, _nth(2)),
)


async def play_story(
    terminals: Sequence[FleetTerminal],
    models: dict[str, SimulatedTerminal],
    stop: asyncio.Event,
    steps: Sequence[StoryStep] = DEMO_STORY,
) -> None:
    """Play ``steps`` on the running fleet until they are done or ``stop`` is set."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    for step in sorted(steps, key=lambda s: s.at_s):
        delay = started + step.at_s - loop.time()
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, delay))
            return
        except TimeoutError:
            pass
        chosen = [t for t in step.select(terminals) if t in models]
        for terminal_id in chosen:
            getattr(models[terminal_id], step.action)(step.fault)
        log.info("demo story: %s %s on %s", step.action, step.fault.value, ", ".join(chosen))
