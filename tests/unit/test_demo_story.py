"""The demo's storyline picks the right terminals and stops when asked; its banner."""

from __future__ import annotations

import asyncio
import dataclasses
import shlex
import sys
import time
from pathlib import Path

import pytest

from posfleet.central.cli import main
from posfleet.central.demo import (
    firmware_actions_command,
    firmware_story,
    incidents_command,
    posfleet_command,
    rollout_command,
)
from posfleet.central.demo_firmware import PILOT_VERSION, RELEASE_VERSION
from posfleet.central.demo_rollouts import DemoRollout
from posfleet.central.fleet_provisioning import DEMO_SITES
from posfleet.firmware.rollout_model import ReasonCode
from posfleet.simulator.demo_story import (
    BUSY_TILL,
    BUSY_TILL_SALES_PER_HOUR,
    DEMO_STORY,
    FIRMWARE_ROLLOUT_AT_S,
    FIRMWARE_SITE,
    SITE_CLOSES_AT_S,
    SITES_OPEN_AT_S,
    StoryStep,
    play_story,
    rollout_sites,
)
from posfleet.simulator.errors import TerminalRefusal
from posfleet.simulator.faults import FaultName
from posfleet.simulator.fleet import time_lapse_clock
from posfleet.simulator.fleet_file import FleetTerminal
from posfleet.simulator.terminal_model import SimulatedTerminal
from tests.harness import wait_for

TERMINALS = [
    FleetTerminal(terminal_id=f"T{i}", password="x", site_id="abc"[i % 3], seed=i) for i in range(9)
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


async def test_the_failing_reader_is_at_the_busy_till() -> None:
    models = _models()
    await play_story(TERMINALS, models, asyncio.Event(), [])
    reader_step = next(s for s in DEMO_STORY if s.fault is FaultName.READER_ERRORS)
    [busy] = reader_step.select(TERMINALS)
    assert models[busy].transactions_per_hour == BUSY_TILL_SALES_PER_HOUR
    assert [t for t, m in models.items() if m.transactions_per_hour > 30] == [busy]


async def test_a_faster_story_plays_every_step_and_ends_with_paper_and_host_back() -> None:
    models = _models()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(play_story(TERMINALS, models, asyncio.Event(), speed=1000), 5)
    assert loop.time() - started < max(s.at_s for s in DEMO_STORY) / 100
    health = {t: m.health() for t, m in models.items()}
    assert all(h.printer is not None and h.printer.status == "ok" for h in health.values())
    assert all(h.network is not None and h.network.host_reachable for h in health.values())
    failing = [t for t, m in models.items() if FaultName.READER_ERRORS in m.active]
    assert failing == BUSY_TILL(TERMINALS), "the reader is not repaired in the story"
    assert all(m.transactions_per_hour > 0 for m in models.values()), "every shop is open"


def _at_once(action: str) -> StoryStep:
    return dataclasses.replace(next(s for s in DEMO_STORY if s.action == action), at_s=0)


def _sold_unsettled(models: dict[str, SimulatedTerminal], site: list[str]) -> None:
    for terminal_id in site:
        models[terminal_id].unsettled = 3  # sold today, not settled yet
    with pytest.raises(TerminalRefusal):
        models[site[0]].check_idle()


def _rollout_terminals(terminals: list[FleetTerminal]) -> list[str]:
    sites = set(rollout_sites(terminals))
    return [t.terminal_id for t in terminals if t.site_id in sites]


async def test_both_firmware_sites_close_with_their_batch_settled_so_they_may_reboot() -> None:
    models = _models()
    closing = _rollout_terminals(TERMINALS)
    assert {t.site_id for t in TERMINALS if t.terminal_id in closing} == {"a", "b"}
    _sold_unsettled(models, closing)
    await play_story(TERMINALS, models, asyncio.Event(), [_at_once("close")], busy=None)
    for terminal_id in closing:
        model = models[terminal_id]
        assert model.unsettled == 0 and model.transactions_per_hour == 0
        model.check_idle()  # a reboot into new firmware is allowed now
    others = [m for t, m in models.items() if t not in closing]
    assert others and all(m.transactions_per_hour == 30 for m in others)


async def test_the_firmware_sites_open_again_at_their_former_pace() -> None:
    models = _models()
    site = _rollout_terminals(TERMINALS)
    models[site[0]].transactions_per_hour = 75.0
    before = {t: models[t].transactions_per_hour for t in site}
    steps = [_at_once("close"), _at_once("open")]
    await play_story(TERMINALS, models, asyncio.Event(), steps, busy=None)
    assert {t: models[t].transactions_per_hour for t in site} == before


def _demo_fleet(count: int = 20) -> list[FleetTerminal]:
    """The terminals as ``posfleet demo`` provisions them: sites in turn."""
    return [
        FleetTerminal(terminal_id=f"DEMO-{i:05d}", password="x", site_id=DEMO_SITES[i % 5], seed=i)
        for i in range(1, count + 1)
    ]


def test_the_release_rolls_out_at_one_quiet_site_and_the_pilot_at_another() -> None:
    fleet = _demo_fleet()
    assert rollout_sites(fleet) == ("vienna-1", "berlin-mitte")
    assert [t.site_id for t in fleet if t.terminal_id in FIRMWARE_SITE(fleet)] == ["vienna-1"] * 4
    # No fault of the story plays there: the update is the only thing that happens to them.
    site = {t.terminal_id: t.site_id for t in fleet}
    faulted = {site[t] for step in DEMO_STORY if step.fault is not None for t in step.select(fleet)}
    assert not faulted & {"vienna-1", "berlin-mitte"}
    # A small demo still rolls the release out, on its one site, without a pilot.
    assert rollout_sites(_demo_fleet(1)) == ("hamburg-hafen", None)
    assert rollout_sites(_demo_fleet(2)) == ("munich-ost", "hamburg-hafen")


def test_the_sites_close_after_the_rollouts_start_and_stay_closed_for_their_waves() -> None:
    assert FIRMWARE_ROLLOUT_AT_S < SITE_CLOSES_AT_S
    # Three waves at speed 1: each waits at most the agents' 30 s busy retry, installs,
    # runs its 30 s health window and soaks a minute; the shops reopen long after.
    assert SITES_OPEN_AT_S - SITE_CLOSES_AT_S > 3 * (30 + 30 + 60) * 2


@pytest.mark.parametrize(
    ("action", "fault"),
    [
        ("inject", None),
        ("clear", None),
        ("close", FaultName.PAPER_OUT),
        ("open", FaultName.PAPER_OUT),
    ],
)
def test_a_story_step_takes_a_fault_exactly_when_it_injects_or_clears_one(
    action: str, fault: FaultName | None
) -> None:
    with pytest.raises(ValueError, match="fault"):
        StoryStep(0, action, fault, FIRMWARE_SITE)  # type: ignore[arg-type]


def _rollout(rollout_id: int, version: str, site: str, count: int) -> DemoRollout:
    ids = tuple(f"DEMO-{n:05d}" for n in range(count))
    waves = ("1 terminal", "50 %", "100 %") if version == RELEASE_VERSION else ("1 terminal",)
    return DemoRollout(rollout_id, version, site, ids, waves, ReasonCode.BUG_FIX, "fixes")


def test_the_banner_announces_the_rollouts_the_firmware_page_and_commands(
    tmp_path: Path,
) -> None:
    url, var_dir = "http://127.0.0.1:8080", tmp_path / "my demo"
    release = _rollout(7, RELEASE_VERSION, "vienna-1", 4)
    pilot = _rollout(8, PILOT_VERSION, "berlin-mitte", 4)
    text = firmware_story([release, pilot], url, var_dir)
    flat = " ".join(text.split())
    assert (
        "starts rollout #7: pos-os 5.3.0 to the 4 terminals at vienna-1, in waves"
        " (1 terminal, then 50 %, then 100 %)"
    ) in flat
    assert "Rollout #8 pilots a release candidate at berlin-mitte" in flat
    assert "the rollout pauses itself" in flat
    assert f"the Firmware page, {url}/firmware," in flat
    assert f"GET {url}/api/v1/firmware/actions" in text
    commands = [line.strip() for line in text.splitlines() if line.startswith("  ")]
    assert commands == [rollout_command(var_dir, 7), firmware_actions_command(var_dir)]
    prose = [line for line in text.splitlines() if not line.startswith("  ")]
    assert max(len(line) for line in prose) <= 80
    words = shlex.split(rollout_command(var_dir, 7))
    assert words[0] == f"POSFLEET_VAR_DIR={var_dir}"
    assert words[-3:] == ["rollout", "watch", "7"]
    assert shlex.split(firmware_actions_command(var_dir))[-2:] == ["firmware", "actions"]
    small = " ".join(firmware_story([_rollout(1, RELEASE_VERSION, "x", 1)], url, var_dir).split())
    assert "to the 1 terminal at x" in small and "pilots" not in small
    nothing = firmware_story([], url, var_dir)
    assert "could not be rolled out" in nothing and "watch" not in nothing


async def test_a_story_speed_must_be_positive() -> None:
    with pytest.raises(ValueError, match="above 0"):
        await play_story(TERMINALS, _models(), asyncio.Event(), speed=0)
    with pytest.raises(ValueError, match="above 0"):
        time_lapse_clock(-1)


def test_a_time_lapse_clock_runs_that_many_times_faster() -> None:
    clock = time_lapse_clock(50)
    wall0, sim0 = time.monotonic(), clock()
    wait_for(lambda: time.monotonic() - wall0 >= 0.2, timeout=5, interval=0.01)
    ratio = (clock() - sim0) / (time.monotonic() - wall0)
    assert 45 < ratio < 51


@pytest.mark.parametrize("value", ["0", "-2", "fast", "1000"])
def test_the_demo_refuses_a_story_speed_it_cannot_play(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["demo", "--story-speed", value])
    assert exit_info.value.code == 2
    assert "--story-speed" in capsys.readouterr().err


def test_the_banner_names_posfleet_by_a_path_that_needs_no_path_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    var_dir = tmp_path / "my demo"
    words = shlex.split(incidents_command(var_dir))
    assert words[0] == f"POSFLEET_VAR_DIR={var_dir}"
    assert Path(words[1]).is_absolute() and words[-2:] == ["incidents", "list"]
    # Run from a source tree without the console script: the interpreter and the module.
    bare = tmp_path / "bin"
    bare.mkdir()
    monkeypatch.setattr(sys, "executable", str(bare / "python3"))
    assert posfleet_command() == [str(bare / "python3"), "-m", "posfleet.central.cli"]
