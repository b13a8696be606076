"""The demo's fault storyline picks the right terminals and stops when asked."""

from __future__ import annotations

import asyncio

from posfleet.simulator.demo_story import DEMO_STORY, StoryStep, play_story
from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.terminal_model import SimulatedTerminal

TERMINALS = [
    FleetTerminal(terminal_id=f"T{i}", password="x", site_id="a" if i % 2 else "b", seed=i)
    for i in range(8)
]


def _models() -> dict[str, SimulatedTerminal]:
    return {t.terminal_id: SimulatedTerminal(f"SN{t.seed}", seed=t.seed) for t in TERMINALS}


async def test_a_site_wide_outage_hits_every_terminal_of_that_site_only() -> None:
    models = _models()
    site_step = next(s for s in DEMO_STORY if s.fault is FaultName.HOST_DOWN)
    await play_story(
        TERMINALS,
        models,
        asyncio.Event(),
        [StoryStep(0, "inject", site_step.fault, site_step.select)],
    )

    def host_down(model: SimulatedTerminal) -> bool:
        network = model.health().network
        return network is not None and not network.host_reachable

    cut_off = {t for t, m in models.items() if host_down(m)}
    assert cut_off == {t.terminal_id for t in TERMINALS if t.site_id == TERMINALS[0].site_id}


async def test_the_story_stops_when_the_demo_stops() -> None:
    models = _models()
    stop = asyncio.Event()
    stop.set()
    await asyncio.wait_for(play_story(TERMINALS, models, stop), timeout=5)
    printers = [m.health().printer for m in models.values()]
    assert all(p is not None and p.status == "ok" for p in printers)
