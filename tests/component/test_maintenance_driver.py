"""The maintenance driver against the simulated terminal, in memory (FakeLink)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from posfleet.agent.drivers import (
    DiagnosticTest,
    MaintenanceDriver,
    MalformedReplyError,
    TerminalRefusedError,
)
from posfleet.agent.serial import Apdu, FakeLink, success
from posfleet.contract import Component, PrinterStatus, RebootReason, Severity
from posfleet.simulator import FaultName, MaintenanceResponder, SimulatedTerminal


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rig(seed: int = 7) -> tuple[SimulatedTerminal, MaintenanceDriver, FakeClock]:
    clock = FakeClock()
    terminal = SimulatedTerminal("SIM-0001", seed=seed, clock=clock, merchant_id="M-42")
    driver = MaintenanceDriver(FakeLink(MaintenanceResponder(terminal).handle))
    return terminal, driver, clock


async def test_identify_reports_what_the_terminal_is() -> None:
    _, driver, _ = rig()
    identity = await driver.identify()
    assert (identity.model, identity.serial, identity.merchant_id) == (
        "PF-M100",
        "SIM-0001",
        "M-42",
    )
    assert identity.app_versions["payment"] == "5.2.0"
    assert "contactless" in identity.capabilities


async def test_health_read_over_the_command_set_equals_the_terminals_state() -> None:
    terminal, driver, clock = rig()
    clock.now += 6 * 3600
    metrics = await driver.read_health()
    assert metrics == terminal.health()
    assert metrics.uptime_s == 6 * 3600
    assert metrics.card_reader is not None and metrics.card_reader.contactless.reads > 0


async def test_same_seed_and_clock_give_the_same_terminal() -> None:
    (_, a, clock_a), (_, b, clock_b) = rig(seed=3), rig(seed=3)
    clock_a.now += 7200
    await a.read_health()  # an extra read must not change the simulation
    clock_a.now += 7200
    clock_b.now += 14400
    assert await a.read_health() == await b.read_health()


async def test_injected_fault_changes_health_and_is_reported_once() -> None:
    terminal, driver, _ = rig()
    terminal.inject(FaultName.PAPER_OUT)
    terminal.inject(FaultName.TAMPER)
    faults = await driver.read_faults()
    assert [f.code for f in faults] == ["printer.no_paper", "tamper.detected"]
    assert faults[1].severity is Severity.CRITICAL and faults[1].component is Component.TAMPER
    assert await driver.read_faults() == []
    metrics = await driver.read_health()
    assert metrics.tamper
    assert metrics.printer is not None and metrics.printer.status is PrinterStatus.NO_PAPER
    terminal.clear(FaultName.PAPER_OUT)
    cleared = await driver.read_health()
    assert cleared.printer is not None and cleared.printer.status is PrinterStatus.OK


async def test_faults_survive_a_lost_reply_until_acknowledged() -> None:
    terminal, driver, _ = rig()
    terminal.inject(FaultName.HOST_DOWN)
    # A driver that crashed after the reply starts again from nothing: it is told again.
    assert [f.code for f in await driver.read_faults()] == ["network.host_unreachable"]
    fresh = MaintenanceDriver(FakeLink(MaintenanceResponder(terminal).handle))
    assert [f.code for f in await fresh.read_faults()] == ["network.host_unreachable"]


async def test_paper_runs_low_then_out_over_a_busy_day() -> None:
    terminal, driver, clock = rig()
    terminal.transactions_per_hour = 200
    clock.now += 12 * 3600
    metrics = await driver.read_health()
    assert metrics.printer is not None and metrics.printer.status is PrinterStatus.NO_PAPER
    codes = [f.code for f in await driver.read_faults()]
    assert codes.index("printer.paper_low") < codes.index("printer.no_paper")


async def test_printing_without_paper_is_refused_with_the_zvt_printer_code() -> None:
    terminal, driver, _ = rig()
    await driver.print_line("hello")
    assert terminal.printed == ["hello"]
    terminal.inject(FaultName.PAPER_OUT)
    with pytest.raises(TerminalRefusedError, match="0xCC") as refused:
        await driver.print_line("again")
    assert refused.value.result_code == 0xCC


async def test_diagnostics_reboot_and_clock_sync() -> None:
    terminal, driver, clock = rig()
    terminal.inject(FaultName.HOST_DOWN)
    ping = await driver.run_diagnostic(DiagnosticTest.HOST_PING)
    assert not ping.passed and "unreachable" in ping.detail
    terminal.inject(FaultName.CLOCK_DRIFT)
    assert await driver.sync_clock(datetime.now(UTC)) > 60
    clock.now += 600
    terminal.settle()  # a terminal with an unsettled batch refuses to reboot
    await driver.reboot()
    metrics = await driver.read_health()
    assert metrics.uptime_s == 0 and metrics.reboot_reason is RebootReason.REMOTE
    assert metrics.clock_offset_s is not None and abs(metrics.clock_offset_s) < 1


async def test_replies_that_break_the_command_set_raise_malformed_reply() -> None:
    garbage = MaintenanceDriver(FakeLink(lambda _: success(b"\x01\x09\x00")))
    with pytest.raises(MalformedReplyError, match="announces 9 bytes"):
        await garbage.identify()
    wrong_class = MaintenanceDriver(FakeLink(lambda _: Apdu(0x04, 0x0F)))
    with pytest.raises(MalformedReplyError, match="expected 80 00 or 84 xx, got 04 0F"):
        await wrong_class.read_health()
    missing = MaintenanceDriver(FakeLink(lambda _: success()))
    with pytest.raises(MalformedReplyError, match="lacks the model"):
        await missing.identify()
