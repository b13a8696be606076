"""The ZVT driver against the simulated terminal in ZVT mode, over a real pty."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from posfleet.agent.drivers import TerminalRefusedError, ZvtDriver
from posfleet.agent.drivers.zvt_protocol import Control, control
from posfleet.agent.serial import Apdu, FakeLink, SerialLink, failure, success
from posfleet.contract import Component, PrinterStatus, Severity
from posfleet.simulator import FaultName, SimulatedTerminal, serve_pty

FAST_T3 = 0.3


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    terminal: SimulatedTerminal
    driver: ZvtDriver
    clock: FakeClock


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    terminal = SimulatedTerminal(
        "ZVT-52500117", seed=4, clock=clock, protocol="zvt", transactions_per_hour=0
    )
    async with serve_pty(terminal) as path, SerialLink(path, ack_timeout=FAST_T3) as link:
        driver = ZvtDriver(link, reply_timeout=2, completion_timeout=2, clock=clock)
        yield Rig(terminal, driver, clock)


@pytest.mark.parametrize(
    ("fault", "result_code", "expected"),
    [
        (FaultName.PAPER_OUT, 0xCC, ("printer.not_ready", Component.PRINTER, Severity.ERROR)),
        (
            FaultName.READER_ERRORS,
            0x64,
            ("card_reader.card_unreadable", Component.CARD_READER, Severity.WARNING),
        ),
        (
            FaultName.CHIP_ERROR,
            0x72,
            ("card_reader.chip_error", Component.CARD_READER, Severity.WARNING),
        ),
        (
            FaultName.READER_DEFECTIVE,
            0xE2,
            ("card_reader.defective", Component.CARD_READER, Severity.ERROR),
        ),
        (FaultName.TAMPER, 0x89, ("tamper.pin_pad_defective", Component.TAMPER, Severity.CRITICAL)),
        (
            FaultName.PIN_PAD_DEFECTIVE,
            0xED,
            ("tamper.pin_pad_defective", Component.TAMPER, Severity.CRITICAL),
        ),
        (FaultName.HOST_DOWN, 0xA3, ("network.no_connection", Component.NETWORK, Severity.ERROR)),
        (
            FaultName.HOST_NOT_RESPONDING,
            0xA1,
            ("network.host_not_responding", Component.NETWORK, Severity.ERROR),
        ),
        (
            FaultName.STORAGE_FULL,
            0xB1,
            ("storage.memory_full", Component.STORAGE, Severity.WARNING),
        ),
        (
            FaultName.JOURNAL_FULL,
            0xB2,
            ("storage.journal_full", Component.STORAGE, Severity.WARNING),
        ),
        (
            FaultName.DUKPT_EXHAUSTED,
            0x74,
            ("keys.dukpt_exhausted", Component.KEYS, Severity.CRITICAL),
        ),
        (FaultName.KEY_MISSING, 0x85, ("keys.missing", Component.KEYS, Severity.CRITICAL)),
    ],
)
async def test_each_result_code_becomes_the_right_fault_event(
    rig: Rig,
    fault: FaultName,
    result_code: int,
    expected: tuple[str, Component, Severity],
) -> None:
    assert await rig.driver.read_faults() == []  # a healthy terminal: nothing to say
    rig.terminal.inject(fault)
    rig.clock.now += 3600  # past the diagnosis interval: host trouble shows too
    [event] = await rig.driver.read_faults()
    assert (event.code, event.component, event.severity) == expected
    assert event.zvt_result_code == result_code
    assert f"0x{result_code:02X}" in event.detail


async def test_a_code_that_stays_is_reported_once_and_again_after_it_cleared(rig: Rig) -> None:
    rig.terminal.inject(FaultName.PAPER_OUT)
    assert [f.code for f in await rig.driver.read_faults()] == ["printer.not_ready"]
    assert await rig.driver.read_faults() == []
    rig.terminal.clear(FaultName.PAPER_OUT)
    assert await rig.driver.read_faults() == []
    rig.terminal.inject(FaultName.PAPER_OUT)
    assert [f.code for f in await rig.driver.read_faults()] == ["printer.not_ready"]


async def test_identity_and_partial_health(rig: Rig) -> None:
    identity = await rig.driver.identify()
    assert identity.serial == "52500117" and identity.capabilities == ["zvt"]
    healthy = await rig.driver.read_health()
    assert healthy.printer is not None and healthy.printer.status is PrinterStatus.OK
    assert healthy.battery is None and healthy.card_reader is None and not healthy.tamper
    rig.terminal.inject(FaultName.PIN_PAD_DEFECTIVE)
    assert (await rig.driver.read_health()).tamper


def _terminal_that(status_code: int | None, refuse: bool = False) -> FakeLink:
    def handle(req: Apdu) -> Apdu | list[Apdu]:
        if req.is_success:
            return []
        if refuse:
            return failure(0x83)
        code = 0 if control(req) == Control.DIAGNOSIS else status_code or 0
        status = Apdu(0x04, 0x0F, bytes((0x27, code)))
        return [success(), Apdu(0x04, 0xFF, b"\x01"), status, Apdu(0x06, 0x0F)]

    return FakeLink(handle)


async def test_an_unknown_result_code_still_becomes_an_event() -> None:
    driver = ZvtDriver(_terminal_that(0x8F), diagnosis_interval_s=1e9)
    [event] = await driver.read_faults()
    assert (event.code, event.severity, event.zvt_result_code) == ("system.zvt_8f", "info", 0x8F)


async def test_the_driver_answers_every_terminal_message() -> None:
    link = _terminal_that(0x00)
    await ZvtDriver(link).read_health()
    assert [control(r) for r in link.requests] == [Control.STATUS_ENQUIRY]
    assert link.requests[0].encode().hex() == "050103000000"
    assert len(link.sent) == 3 and all(a.is_success for a in link.sent)


async def test_a_refused_command_is_a_clear_error() -> None:
    with pytest.raises(TerminalRefusedError, match="status enquiry: result 0x83"):
        await ZvtDriver(_terminal_that(None, refuse=True)).identify()


async def test_a_terminal_without_diagnosis_still_reports_its_status() -> None:
    def handle(req: Apdu) -> Apdu | list[Apdu]:
        if req.is_success:
            return []
        if control(req) == Control.DIAGNOSIS:
            return failure(0x83)
        return [success(), Apdu(0x04, 0x0F, bytes((0x27, 0xB2))), Apdu(0x06, 0x0F)]

    driver = ZvtDriver(FakeLink(handle))
    assert [f.code for f in await driver.read_faults()] == ["storage.journal_full"]
    assert not driver.diagnosis_supported
    assert await driver.read_faults() == []
