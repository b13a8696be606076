"""Every maintenance command, driver <-> simulated terminal, over a real pty."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from posfleet.agent.drivers import (
    DiagnosticTest,
    FirmwareSlot,
    MaintenanceDriver,
    SupportsRemoteActions,
    TerminalRefusedError,
    write_firmware_image,
)
from posfleet.agent.serial import SerialLink
from posfleet.contract import PrinterStatus, RebootReason
from posfleet.simulator import FaultName, SimulatedTerminal, serve_pty
from posfleet.simulator.firmware_slots import BOOT_LOOP_MARKER

FAST_T3 = 0.3
WALL_EPOCH = datetime(2026, 3, 2, 9, 0, tzinfo=UTC).timestamp()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    terminal: SimulatedTerminal
    driver: MaintenanceDriver
    clock: FakeClock


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    clock = FakeClock()
    terminal = SimulatedTerminal(
        "SIM-CMD-1", seed=21, clock=clock, wall_epoch=WALL_EPOCH, transactions_per_hour=0
    )
    async with serve_pty(terminal) as path, SerialLink(path, ack_timeout=FAST_T3) as link:
        yield Rig(terminal, MaintenanceDriver(link), clock)


def image(size: int, *, boot_loop: bool = False) -> bytes:
    body = bytes((i * 7 + 3) % 251 for i in range(size))
    return body[:-64] + BOOT_LOOP_MARKER.ljust(64, b"\0") if boot_loop else body


async def test_the_driver_offers_every_remote_action(rig: Rig) -> None:
    assert isinstance(rig.driver, SupportsRemoteActions)


async def test_counters_report_lifetime_wear(rig: Rig) -> None:
    rig.terminal.transactions_per_hour = 300
    rig.clock.now += 4 * 3600
    counters = await rig.driver.read_counters()
    assert counters == rig.terminal.counters()
    assert counters.contactless_taps > 0 and counters.lines_printed > 0
    assert counters.battery_cycles is not None


async def test_each_diagnostic_reports_what_it_checked(rig: Rig) -> None:
    printer = await rig.driver.run_diagnostic(DiagnosticTest.PRINTER)
    assert printer.passed and rig.terminal.printed == ["*** posfleet printer test ***"]
    assert {c.name for c in printer.checks} == {"printer", "test_line"}

    rig.terminal.inject(FaultName.READER_ERRORS)
    reader = await rig.driver.run_diagnostic(DiagnosticTest.CARD_READER)
    assert not reader.passed
    assert [c.name for c in reader.checks if not c.passed] == ["read_head"]

    ping = await rig.driver.run_diagnostic(DiagnosticTest.HOST_PING)
    assert ping.passed and ping.latency_ms is not None and ping.latency_ms > 0

    rig.terminal.inject(FaultName.HOST_DOWN)
    rig.terminal.inject(FaultName.PAPER_OUT)
    selftest = await rig.driver.run_diagnostic(DiagnosticTest.SELF_TEST)
    assert not selftest.passed
    failed = {c.name for c in selftest.checks if not c.passed}
    assert failed == {"printer", "host"}
    assert selftest.detail == "failed: printer, host"


async def test_print_line_and_printer_not_ready(rig: Rig) -> None:
    await rig.driver.print_line("Testbeleg äöü")
    assert rig.terminal.printed == ["Testbeleg äöü"]
    rig.terminal.inject(FaultName.PRINTER_JAM)
    with pytest.raises(TerminalRefusedError, match="printer not ready") as refused:
        await rig.driver.print_line("again")
    assert refused.value.result_code == 0xCC


async def test_logs_by_date_range_arrive_whole_in_many_chunks(rig: Rig) -> None:
    pan = "4111111111111111"
    rig.clock.now += 3600
    for i in range(400):
        rig.terminal.log(f"line {i:03d} card={pan} amount=12.{i % 100:02d}")
    rig.clock.now += 3600
    rig.terminal.log("later line, outside the range")
    start = datetime.fromtimestamp(WALL_EPOCH, UTC) + timedelta(minutes=30)
    end = start + timedelta(hours=1)

    logs = await rig.driver.collect_logs(start, end)

    lines = logs.lines
    assert len(lines) == 400 and not logs.truncated
    assert lines[0].endswith(f"line 000 card={pan} amount=12.00")  # transferred as written
    assert lines[-1].endswith("line 399 card=4111111111111111 amount=12.99")
    assert len(logs.text.encode()) > 4 * 1024  # more than one chunk's worth
    assert all("outside the range" not in line for line in lines)


async def test_logs_beyond_the_limit_are_cut_at_a_line_end(rig: Rig) -> None:
    for i in range(100):
        rig.terminal.log(f"entry {i:03d} " + "x" * 40)
    start = datetime.fromtimestamp(WALL_EPOCH - 60, UTC)
    logs = await rig.driver.collect_logs(start, start + timedelta(days=1), max_bytes=2000)
    assert logs.truncated and 0 < len(logs.text.encode()) <= 2000
    assert logs.text.endswith("\n") and all("x" * 40 in line for line in logs.lines[1:])


async def test_clock_sync_returns_the_previous_offset(rig: Rig) -> None:
    rig.terminal.inject(FaultName.CLOCK_DRIFT)
    assert await rig.driver.sync_clock(datetime.now(UTC)) > 100
    health = await rig.driver.read_health()
    assert health.clock_offset_s == 0.0


async def test_reboot_is_refused_during_a_sale_and_with_an_unsettled_batch(rig: Rig) -> None:
    rig.terminal.begin_sale()
    with pytest.raises(TerminalRefusedError, match="transaction is in progress") as busy:
        await rig.driver.reboot()
    assert busy.value.result_code == 0xF2
    rig.terminal.end_sale()
    rig.terminal.unsettled = 3
    with pytest.raises(TerminalRefusedError, match="not settled") as unsettled:
        await rig.driver.reboot()
    assert unsettled.value.result_code == 0xF3
    rig.terminal.settle()
    rig.clock.now += 600
    await rig.driver.reboot()
    health = await rig.driver.read_health()
    assert health.uptime_s == 0 and health.reboot_reason is RebootReason.REMOTE


async def test_config_backup_withholds_secrets_and_restores_onto_a_replacement(rig: Rig) -> None:
    backup = await rig.driver.backup_config()
    assert backup.params["receipt.header"] == "Thank you for shopping"
    assert set(backup.withheld) == {"wifi.psk", "host.tls_client_key", "admin.pin"}
    assert not set(backup.params) & set(backup.withheld)

    replacement = SimulatedTerminal("SIM-CMD-2", seed=5, clock=rig.clock)
    changed = backup.params | {"receipt.header": "Bäckerei Schmidt", "admin.pin": "0000"}
    async with serve_pty(replacement) as path, SerialLink(path, ack_timeout=FAST_T3) as link:
        result = await MaintenanceDriver(link).restore_config(changed | {"bogus.key": "1"})
    assert result.rejected == {
        "terminal.serial": "read-only",
        "admin.pin": "secret: set by key injection, never by a restore",
        "bogus.key": "unknown parameter",
    }
    assert "receipt.header" in result.applied
    assert replacement.config.params["receipt.header"].value == "Bäckerei Schmidt"
    assert replacement.config.params["admin.pin"].value == "4711"


async def test_firmware_transfer_activate_and_confirm(rig: Rig) -> None:
    before = await rig.driver.firmware_status()
    assert before.active is FirmwareSlot.A and before.versions[FirmwareSlot.A] == "2.4.1"
    payload = image(50_000)
    progress: list[int] = []

    slot = await write_firmware_image(
        rig.driver, payload, "2.5.0", progress=lambda done, _total: progress.append(done)
    )

    assert slot is FirmwareSlot.B and progress[-1] == len(payload) and len(progress) == 13
    await rig.driver.firmware_activate()
    trial = await rig.driver.firmware_status()
    assert trial.active is FirmwareSlot.B and trial.pending_confirm
    assert (await rig.driver.identify()).firmware_version == "2.5.0"
    health = await rig.driver.read_health()
    assert health.reboot_reason is RebootReason.FIRMWARE_UPDATE
    await rig.driver.firmware_confirm()
    final = await rig.driver.firmware_status()
    assert not final.pending_confirm and final.versions == {
        FirmwareSlot.A: "2.4.1",
        FirmwareSlot.B: "2.5.0",
    }
    assert (await rig.driver.read_counters()).firmware_updates == 1

    await rig.driver.firmware_rollback()
    assert (await rig.driver.identify()).firmware_version == "2.4.1"


async def test_an_image_whose_sha256_does_not_match_is_refused(rig: Rig) -> None:
    payload = image(10_000)
    wrong = hashlib.sha256(b"something else").digest()
    transfer = await rig.driver.firmware_begin(len(payload), wrong, "6.6.6")
    for offset in range(0, len(payload), transfer.block_size):
        await rig.driver.firmware_write_block(
            offset, payload[offset : offset + transfer.block_size]
        )
    with pytest.raises(TerminalRefusedError, match="SHA-256 does not match") as refused:
        await rig.driver.firmware_verify()
    assert refused.value.result_code == 0xF4
    with pytest.raises(TerminalRefusedError, match="firmware update state") as nothing:
        await rig.driver.firmware_activate()
    assert nothing.value.result_code == 0xF6
    assert (await rig.driver.identify()).firmware_version == "2.4.1"


async def test_an_interrupted_transfer_resumes_where_it_stopped(rig: Rig) -> None:
    payload = image(20_000)
    digest = hashlib.sha256(payload).digest()
    first = await rig.driver.firmware_begin(len(payload), digest, "2.6.0")
    await rig.driver.firmware_write_block(0, payload[: first.block_size])
    with pytest.raises(TerminalRefusedError, match="not at the expected offset"):
        await rig.driver.firmware_write_block(3 * first.block_size, payload[:10])
    again = await rig.driver.firmware_begin(len(payload), digest, "2.6.0")
    assert again.resume_offset == first.block_size
    await write_firmware_image(rig.driver, payload, "2.6.0")
    await rig.driver.firmware_activate()
    assert (await rig.driver.firmware_status()).versions[FirmwareSlot.B] == "2.6.0"


async def test_a_boot_looping_image_is_rolled_back_by_the_terminal(rig: Rig) -> None:
    await write_firmware_image(rig.driver, image(9_000, boot_loop=True), "3.0.0-bad")
    await rig.driver.firmware_activate()
    status = await rig.driver.firmware_status()
    assert status.active is FirmwareSlot.A and not status.pending_confirm
    assert "failed to boot 3 times" in status.last_rollback
    assert (await rig.driver.identify()).firmware_version == "2.4.1"
    faults = await rig.driver.read_faults()
    assert [f.code for f in faults] == ["firmware.rolled_back"]
    assert (await rig.driver.read_counters()).reboots >= 3


async def test_an_unconfirmed_image_is_rolled_back_at_the_next_reboot(rig: Rig) -> None:
    await write_firmware_image(rig.driver, image(5_000), "2.7.0")
    await rig.driver.firmware_activate()
    with pytest.raises(TerminalRefusedError, match="0xF6"):
        await rig.driver.firmware_begin(10, hashlib.sha256(b"x").digest(), "2.8.0")
    await rig.driver.reboot()
    status = await rig.driver.firmware_status()
    assert status.active is FirmwareSlot.A and "not confirmed" in status.last_rollback


async def test_the_scenario_boot_loop_fault_makes_a_good_image_fail(rig: Rig) -> None:
    rig.terminal.inject(FaultName.FIRMWARE_BOOT_LOOP)
    await write_firmware_image(rig.driver, image(3_000), "2.9.0")
    await rig.driver.firmware_activate()
    assert (await rig.driver.firmware_status()).active is FirmwareSlot.A
    health = await rig.driver.read_health()
    assert health.printer is not None and health.printer.status is not PrinterStatus.FAULT
