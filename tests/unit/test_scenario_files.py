"""Scenario files: parsing good and bad ones, and running them on a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from posfleet.contract import PrinterStatus, RebootReason
from posfleet.simulator import (
    FaultName,
    LinkFaults,
    ScenarioError,
    SimulatedTerminal,
    load_scenario,
    parse_scenario,
)

A_BAD_AFTERNOON = """
name = "a bad afternoon"
description = "everything that goes wrong on a Friday"

[terminal]
transactions_per_hour = 600
reader_error_rate = 0.01

[[events]]
at = "30s"
inject = "paper_out"

[[events]]
at = 60
clear = "paper_out"

[[events]]
at = "0s"
ramp_reader_errors = { from = 0.01, to = 0.30, over = "5m" }

[[events]]
at = "2m"
inject = "host_down"

[[events]]
at = "3m"
link = { noise = true, byte_delay_ms = 1.5 }

[[events]]
at = "4m"
inject = "reboot_loop"

[[events]]
at = "9m30s"
inject = "tamper"
"""


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_ten_minute_scenario_runs_instantly_on_the_fake_clock(tmp_path: Path) -> None:
    path = tmp_path / "afternoon.toml"
    path.write_text(A_BAD_AFTERNOON, encoding="utf-8")
    scenario = load_scenario(path)
    assert scenario.name == "a bad afternoon" and scenario.duration_s == 570
    clock, link = FakeClock(), LinkFaults()
    terminal = SimulatedTerminal("SCN-1", seed=2, clock=clock, transactions_per_hour=600)
    scenario.install(terminal, link)

    clock.now = 40
    assert terminal.health().printer.status is PrinterStatus.NO_PAPER  # type: ignore[union-attr]
    clock.now = 70
    assert terminal.health().printer.status is not PrinterStatus.NO_PAPER  # type: ignore[union-attr]
    assert terminal.reader_error_rate_now() == pytest.approx(0.01 + 0.29 * 70 / 300, abs=0.01)
    clock.now = 130
    health = terminal.health()
    assert health.network is not None and not health.network.host_reachable
    assert not link.noise
    clock.now = 190
    terminal.advance()
    assert link.noise and link.byte_delay_s == pytest.approx(0.0015)
    clock.now = 600
    health = terminal.health()
    assert health.tamper and health.reboot_reason is RebootReason.WATCHDOG
    assert terminal.reboots >= 1
    codes = [f.code for _, f in terminal.pending_faults(0)]
    for expected in (
        "printer.no_paper",
        "card_reader.read_errors",
        "network.host_unreachable",
        "system.watchdog_reset",
        "tamper.detected",
    ):
        assert expected in codes
    assert codes.index("printer.no_paper") < codes.index("tamper.detected")


def test_build_terminal_uses_the_scenario_setup() -> None:
    scenario = parse_scenario('[terminal]\nprotocol = "zvt"\nportable = false\n')
    terminal = scenario.build_terminal("SCN-2", clock=FakeClock())
    assert terminal.protocol == "zvt" and terminal.battery is None


def test_firmware_boot_loop_and_actions_from_a_scenario() -> None:
    clock = FakeClock()
    terminal = SimulatedTerminal("SCN-3", seed=1, clock=clock, transactions_per_hour=0)
    parse_scenario(
        """
        [[events]]
        at = "10s"
        inject = "firmware_boot_loop"
        [[events]]
        at = "20s"
        action = "begin_sale"
        """
    ).install(terminal)
    clock.now = 25
    terminal.advance()
    assert FaultName.FIRMWARE_BOOT_LOOP in terminal.active and terminal.sale_in_progress


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[[events]\nat = 1", "not valid TOML"),
        ('[[events]]\nat = "30s"\ninject = "gremlins"', "events.0.inject: Input should be"),
        ('[[events]]\nat = "soon"\ninject = "tamper"', "is not a duration"),
        ('[[events]]\nat = 5\ninject = "tamper"\nclear = "tamper"', "exactly one of"),
        ("[[events]]\nat = 5", "(this one: none)"),
        ('[[events]]\nat = -1\ninject = "tamper"', "greater than or equal to 0"),
        ("colour = 'blue'", "colour: Extra inputs are not permitted"),
        ("[[events]]\nat = 1\nramp_reader_errors = { from = 0.1, to = 2, over = 5 }", "to:"),
    ],
)
def test_a_bad_file_says_which_file_and_why(tmp_path: Path, text: str, reason: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert str(error.value).startswith(f"scenario {path}: ")
    assert reason in str(error.value)


def test_a_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot be read"):
        load_scenario(tmp_path / "nope.toml")


def test_line_changes_need_the_line() -> None:
    scenario = parse_scenario("[[events]]\nat = 1\nlink = { silent = true }")
    with pytest.raises(Exception, match="pass its LinkFaults"):
        scenario.install(SimulatedTerminal("SCN-4", clock=FakeClock()))
