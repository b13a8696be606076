"""A short storyline of faults for the demo, so the dashboard has problems to show.

In the first minutes one terminal runs out of paper, one card reader starts failing, and
every terminal of one site loses its acquirer host (one fleet incident, not several);
the host comes back and the paper is reloaded later, so incidents also resolve.

After a minute the demo's central side starts two firmware rollouts (see
:mod:`posfleet.central.demo_firmware`): pos-os 5.3.0 to the terminals of one site
(:data:`FIRMWARE_SITE`), in waves, and a release candidate that boot-loops to the
terminals of another (:func:`rollout_sites`), whose canary rolls back on its own and pauses
that rollout. Terminals reboot into new firmware only with the batch settled, so both
sites close at :data:`SITE_CLOSES_AT_S` (batch settled, no more sales) and open again at
:data:`SITES_OPEN_AT_S`, once the waves are through.

The failing reader sits at the fleet's busiest till, a sale every 30 seconds as at a
cafe's rush hour. The card-reader rule judges an error share only over at least 10 reads
in 10 minutes (a quiet terminal's three sales prove nothing), so at an ordinary till the
failing reader would take most of the demo to show; at the busy one its reads and
retries pass that mark within a few minutes and the rule fires on the error share, as it
would for a real terminal.

``speed`` plays it all faster, for tests and quick looks: the steps come ``speed`` times
sooner, and the fleet runs its terminals' clocks ``speed`` times faster too (see
:func:`posfleet.simulator.fleet.time_lapse_clock`), so they sell that much more per minute.
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

BUSY_TILL_SALES_PER_HOUR = 120.0
"""The busy till's trade: a sale every 30 seconds (an ordinary till sells 30 an hour)."""


def _nth(n: int) -> Select:
    def select(terminals: Sequence[FleetTerminal]) -> list[str]:
        return [terminals[n % len(terminals)].terminal_id]

    return select


def _site_of_nth(n: int) -> Select:
    def select(terminals: Sequence[FleetTerminal]) -> list[str]:
        site = terminals[n % len(terminals)].site_id
        return [t.terminal_id for t in terminals if t.site_id == site]

    return select


StepAction = Literal["inject", "clear", "close", "open"]


@dataclass(frozen=True, slots=True)
class StoryStep:
    """At ``at_s`` seconds after start, act on the selected terminals.

    ``inject`` and ``clear`` set or end ``fault``; ``close`` settles the batch and stops
    trading (the shop closes), ``open`` lets it trade again at its former pace.
    """

    at_s: float
    action: StepAction
    fault: FaultName | None
    select: Select

    def __post_init__(self) -> None:
        needs_fault = self.action in ("inject", "clear")
        if needs_fault and self.fault is None:
            raise ValueError(f"a story step that does {self.action!r} needs a fault")
        if not needs_fault and self.fault is not None:
            raise ValueError(f"a story step that does {self.action!r} takes no fault")


BUSY_TILL = _nth(6)
"""The till whose card reader fails in the story."""

_RELEASE_NTH, _PILOT_NTH = 3, 4
FIRMWARE_SITE = _site_of_nth(_RELEASE_NTH)
"""The terminals that get the release, in waves: a site (vienna-1 in the 20-terminal demo).

The next site (berlin-mitte) pilots the release candidate; see :func:`rollout_sites`.
"""
FIRMWARE_ROLLOUT_AT_S = 60.0
"""When the demo starts its rollouts (central side; scaled by the speed like the steps)."""
SITE_CLOSES_AT_S = 90.0
"""When the two firmware sites close and settle: their terminals may reboot into updates."""
SITES_OPEN_AT_S = 900.0
"""When they open again: well after the release's last wave, even on a slow machine."""


def _firmware_sites(terminals: Sequence[FleetTerminal]) -> list[str]:
    release, pilot = rollout_sites(terminals)
    sites = {release, pilot}
    return [t.terminal_id for t in terminals if t.site_id in sites]


DEMO_STORY: tuple[StoryStep, ...] = (
    StoryStep(20, "inject", FaultName.PAPER_OUT, _nth(2)),
    StoryStep(35, "inject", FaultName.READER_ERRORS, BUSY_TILL),
    StoryStep(50, "inject", FaultName.HOST_DOWN, _site_of_nth(0)),
    StoryStep(SITE_CLOSES_AT_S, "close", None, _firmware_sites),
    StoryStep(170, "clear", FaultName.HOST_DOWN, _site_of_nth(0)),
    StoryStep(240, "clear", FaultName.PAPER_OUT, _nth(2)),
    StoryStep(SITES_OPEN_AT_S, "open", None, _firmware_sites),
)


def rollout_sites(terminals: Sequence[FleetTerminal]) -> tuple[str, str | None]:
    """The sites of the two rollouts: (the release's, the pilot's or None).

    A fleet too small for two sites has no pilot: its one site gets the release.
    """
    release = terminals[_RELEASE_NTH % len(terminals)].site_id
    pilot = terminals[_PILOT_NTH % len(terminals)].site_id
    return release, None if pilot == release else pilot


async def play_story(
    terminals: Sequence[FleetTerminal],
    models: dict[str, SimulatedTerminal],
    stop: asyncio.Event,
    steps: Sequence[StoryStep] = DEMO_STORY,
    *,
    speed: float = 1.0,
    busy: Select | None = BUSY_TILL,
) -> None:
    """Play ``steps`` on the running fleet until they are done or ``stop`` is set.

    The ``busy`` terminal trades at :data:`BUSY_TILL_SALES_PER_HOUR` from the start;
    ``speed`` divides every step's time.
    """
    if speed <= 0:
        raise ValueError(f"the story's speed must be above 0, not {speed}")
    for terminal_id in busy(terminals) if busy is not None else []:
        if terminal_id in models:
            models[terminal_id].transactions_per_hour = BUSY_TILL_SALES_PER_HOUR
    trading: dict[str, float] = {}  # each closed shop's terminal's pace, for when it opens
    loop = asyncio.get_running_loop()
    started = loop.time()
    for step in sorted(steps, key=lambda s: s.at_s):
        delay = started + step.at_s / speed - loop.time()
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, delay))
            return
        except TimeoutError:
            pass
        chosen = [t for t in step.select(terminals) if t in models]
        for terminal_id in chosen:
            _act(step, models[terminal_id], terminal_id, trading)
        what = step.fault.value if step.fault is not None else "shop"
        log.info("demo story: %s %s on %s", step.action, what, ", ".join(chosen))


def _act(
    step: StoryStep, model: SimulatedTerminal, terminal_id: str, trading: dict[str, float]
) -> None:
    if step.action == "close":
        model.advance()  # the sales up to now still happen, at the old pace
        trading.setdefault(terminal_id, model.transactions_per_hour)
        model.transactions_per_hour = 0.0
        model.settle()
    elif step.action == "open":
        model.transactions_per_hour = trading.pop(terminal_id, model.transactions_per_hour)
    elif step.fault is not None:
        getattr(model, step.action)(step.fault)
