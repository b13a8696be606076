"""A firmware that installs fine but whose card reader then misreads: the simulator's knob.

The update goes through the agent's own driver (in process, no pty), exactly as the
updater drives it, on a fake clock; what the tests read is what the agent would send:
the terminal's health report.
"""

from __future__ import annotations

import hashlib

import pytest

from posfleet.agent.drivers import MaintenanceDriver
from posfleet.contract import HealthMetrics, RebootReason
from posfleet.simulator import SimulatedTerminal
from posfleet.simulator.errors import ScenarioError
from posfleet.simulator.firmware_images import make_image, reader_error_rate_of
from posfleet.simulator.fleet import InProcessLink
from posfleet.simulator.responder import MaintenanceResponder
from posfleet.simulator.scenario import parse_scenario

HOUR = 3600.0


class FakeClock:
    """Simulated seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def error_share(health: HealthMetrics) -> tuple[int, float]:
    """Read attempts since boot on every interface, and the share that failed."""
    reader = health.card_reader
    assert reader is not None
    counters = (reader.chip, reader.magstripe, reader.contactless)
    reads = sum(c.reads for c in counters)
    errors = sum(c.errors for c in counters)
    return reads, errors / reads if reads else 0.0


def busy_terminal(clock: FakeClock, **setup: object) -> SimulatedTerminal:
    """A terminal with a steady queue of cardholders and a clean reader."""
    return SimulatedTerminal(
        "SN-READER", seed=5, clock=clock, transactions_per_hour=360, reader_error_rate=0.01,
        **setup,  # type: ignore[arg-type]
    )  # fmt: skip


async def install(terminal: SimulatedTerminal, image: bytes, version: str) -> None:
    """Transfer, verify, activate and confirm ``image`` the way the agent's updater does."""
    terminal.settle()  # an unsettled batch would (rightly) refuse the reboot
    driver = MaintenanceDriver(InProcessLink(MaintenanceResponder(terminal)))
    transfer = await driver.firmware_begin(len(image), hashlib.sha256(image).digest(), version)
    for offset in range(transfer.resume_offset, len(image), transfer.block_size):
        await driver.firmware_write_block(offset, image[offset : offset + transfer.block_size])
    await driver.firmware_verify()
    await driver.firmware_activate()
    await driver.firmware_confirm()


async def trade_for(terminal: SimulatedTerminal, clock: FakeClock, hours: float) -> HealthMetrics:
    clock.now += hours * HOUR
    driver = MaintenanceDriver(InProcessLink(MaintenanceResponder(terminal)))
    return await driver.read_health()


def test_an_image_carries_its_reader_error_rate_and_keeps_its_exact_size() -> None:
    marked = make_image("2.6.0", 50_000, reader_error_rate=0.3)
    assert len(marked) == 50_000
    assert reader_error_rate_of(marked) == pytest.approx(0.3)
    assert reader_error_rate_of(make_image("2.6.0", 50_000)) is None
    # Same arguments, same bytes; a different rate, a different image.
    assert marked == make_image("2.6.0", 50_000, reader_error_rate=0.3)
    assert marked != make_image("2.6.0", 50_000, reader_error_rate=0.2)
    with pytest.raises(ValueError, match="between 0 and 1"):
        make_image("2.6.0", 50_000, reader_error_rate=1.5)


async def test_a_terminal_running_the_regressed_image_misreads_cards_after_a_clean_update() -> None:
    clock = FakeClock()
    terminal = busy_terminal(clock)
    reads_before, share_before = error_share(await trade_for(terminal, clock, 4))
    assert reads_before > 500 and share_before < 0.03

    await install(terminal, make_image("2.6.0", 20_000, reader_error_rate=0.3), "2.6.0")
    # The update itself succeeded: new version, confirmed, one clean reboot.
    assert terminal.identity.firmware_version == "2.6.0"
    assert terminal.firmware.updates == 1 and not terminal.firmware.pending_confirm
    assert terminal.reboot_reason is RebootReason.FIRMWARE_UPDATE

    after = await trade_for(terminal, clock, 4)
    reads_after, share_after = error_share(after)
    assert reads_after > 500
    assert 0.25 < share_after < 0.35, share_after
    assert after.uptime_s == pytest.approx(4 * HOUR, abs=20)  # no crash, no reboot since
    # The terminal itself flags its reader, as a real one does above 5 %.
    assert "card_reader.read_errors" in [f.code for _, f in terminal.pending_faults(0)]

    # Back on the old slot, the reader is as good as it was.
    terminal.settle()
    terminal.rollback_firmware()
    assert terminal.identity.firmware_version == "2.4.1"
    _, share_back = error_share(await trade_for(terminal, clock, 4))
    assert share_back < 0.03


async def test_a_scenario_file_makes_any_image_of_a_version_regress_the_reader() -> None:
    scenario = parse_scenario(
        """
        [terminal]
        transactions_per_hour = 360
        firmware_reader_error_rates = { "2.6.0" = 0.25 }
        """
    )
    clock = FakeClock()
    terminal = scenario.build_terminal("SN-SCENARIO", seed=9, clock=clock)
    _, share_before = error_share(await trade_for(terminal, clock, 4))
    assert share_before < 0.03
    await install(terminal, make_image("2.6.0", 20_000), "2.6.0")
    reads, share_after = error_share(await trade_for(terminal, clock, 4))
    assert reads > 500 and 0.2 < share_after < 0.3, share_after

    # Another version from the same scenario reads as well as before.
    other = scenario.build_terminal("SN-SCENARIO-2", seed=9, clock=clock)
    await install(other, make_image("2.5.0", 20_000), "2.5.0")
    _, share_other = error_share(await trade_for(other, clock, 4))
    assert share_other < 0.03


def test_a_scenario_rate_outside_0_to_1_is_refused_with_where_and_why() -> None:
    with pytest.raises(ScenarioError) as refused:
        parse_scenario('[terminal]\nfirmware_reader_error_rates = { "2.6.0" = 1.5 }\n', "bad.toml")
    message = str(refused.value)
    assert "bad.toml" in message and "firmware_reader_error_rates.2.6.0" in message
    assert "less than or equal to 1" in message
