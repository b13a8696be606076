"""A simulated payment terminal: a state model that evolves with time and takes faults.

Time advances in fixed ticks of simulated seconds, whatever the pattern of reads, so a
terminal built with the same seed and read at the same clock values reports the same
numbers (tests and demos are reproducible). The clock is injectable, so a test runs a
ten-minute scenario in no time. Actions scheduled on the terminal's timeline (a scenario)
run when simulated time reaches them, resolved to the tick.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Callable
from datetime import date, timedelta
from typing import Literal

from posfleet.agent.drivers.base import DetectedFault, TerminalCounters, TerminalIdentity
from posfleet.agent.drivers.maintenance_codes import ResultCode
from posfleet.contract import (
    Component,
    HealthMetrics,
    PrinterStatus,
    RebootReason,
    Severity,
)
from posfleet.simulator.card_numbers import fake_pan
from posfleet.simulator.card_reads import (
    READER_FAULT_RATE,
    READER_OK_RATE,
    ErrorRamp,
    ReadCounts,
    choose_interface,
    read_attempts,
)
from posfleet.simulator.errors import TerminalRefusal
from posfleet.simulator.faults import FaultName, fault_event
from posfleet.simulator.firmware_slots import FirmwareSlotsModel
from posfleet.simulator.log_journal import LogJournal
from posfleet.simulator.readings import counters_reading, health_reading
from posfleet.simulator.terminal_config import ParameterStore, default_parameters

# FaultName and READER_FAULT_RATE stay importable from here
__all__ = ["READER_FAULT_RATE", "FaultName", "SimulatedTerminal"]

TICK_S = 10.0
ROLL_LINES = 1500
LINES_PER_RECEIPT = 24
MAX_QUEUED_FAULTS = 256
SETTLEMENT_EVERY_S = 24 * 3600.0
REBOOT_LOOP_PERIOD_S = 300.0
CONFIRM_TIMEOUT_S = 1800.0
"""A new firmware slot not confirmed within this time is rolled back."""
BOOT_ATTEMPTS = 3
DUKPT_PER_KEY = 1_000_000
READER_WEAR_PER_INSERTION = 2e-8
"""Each chip insertion wears the contacts: +2% error rate per million insertions."""
FAILING_READER_RATE = 0.4
"""Share of read attempts a dirty or worn reader (fault ``reader_errors``) gets wrong."""

Protocol = Literal["maintenance", "zvt"]


class SimulatedTerminal:
    """One terminal's hardware state; a responder serves it over a command set.

    ``protocol`` says what it speaks on its serial port: the posfleet maintenance
    command set, or ZVT as an unmodified ECR terminal does.
    """

    def __init__(
        self,
        serial: str,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        wall_epoch: float | None = None,
        portable: bool = True,
        merchant_id: str = "",
        firmware_version: str = "2.4.1",
        reader_error_rate: float = 0.01,
        transactions_per_hour: float = 30.0,
        protocol: Protocol = "maintenance",
        firmware_reader_error_rates: dict[str, float] | None = None,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._t = self._start_t = clock()
        self._wall0 = time.time() if wall_epoch is None else wall_epoch
        self._boot_t = self._settled_t = self._t
        rng = self._rng
        self.protocol: Protocol = protocol
        self._identity = TerminalIdentity(
            model="PF-M100" if portable else "PF-C200",
            serial=serial,
            hw_revision="B" if portable else "A",
            firmware_version=firmware_version,
            app_versions={"payment": "5.2.0", "emv-kernel": "3.1.7"},
            capabilities=["printer", "chip", "magstripe", "contactless"]
            + (["battery", "wifi"] if portable else ["ethernet"]),
            merchant_id=merchant_id,
        )
        self.portable = portable
        self.reader_error_rate = reader_error_rate
        self.transactions_per_hour = transactions_per_hour
        self.active: set[FaultName] = set()
        self.battery = rng.uniform(40, 100) if portable else None
        self.charging = False
        self.battery_cycles = rng.randrange(20, 400)
        self._charged_pct = 0.0
        self.temperature = rng.uniform(28, 36)
        self.paper_lines = rng.randrange(ROLL_LINES // 3, ROLL_LINES)
        self.paper_rolls = rng.randrange(50, 2000)
        self.lines_printed = rng.randrange(10_000, 500_000)
        self.readers = {name: ReadCounts() for name in ("chip", "magstripe", "contactless")}
        self.lifetime = {name: ReadCounts() for name in self.readers}
        self.insertions = rng.randrange(1_000, 50_000)
        self.base_rssi = rng.randrange(-72, -50) if portable else None
        self.rssi = self.base_rssi
        self.tls_failures = 0
        self.storage = rng.uniform(20, 60)
        self.memory = rng.uniform(30, 55)
        self.clock_offset = rng.uniform(-0.5, 0.5)
        self.drift_ppm = rng.uniform(-30, 30)
        self.dukpt_remaining = DUKPT_PER_KEY - rng.randrange(0, 200_000)
        self.key_expiry = date(2027, 1, 1) + timedelta(days=rng.randrange(0, 700))
        self.approved = self.declined = self.failed = self.unsettled = 0
        self.transactions_total = rng.randrange(1_000, 100_000)
        self.settlements = rng.randrange(10, 1000)
        self.decline_codes: dict[str, int] = {}
        self.sale_in_progress = False
        self.reboot_reason = RebootReason.POWER_ON
        self.reboots = 0
        self.printed: list[str] = []
        self.firmware = FirmwareSlotsModel(
            firmware_version,
            model=self._identity.model,
            reader_error_rates=firmware_reader_error_rates,
        )
        self.config = ParameterStore(default_parameters(serial, merchant_id))
        self.journal = LogJournal()
        self._activated_t: float | None = None
        self._ramp: ErrorRamp | None = None
        self._fault_seq = 0
        self._faults: deque[tuple[int, DetectedFault]] = deque(maxlen=MAX_QUEUED_FAULTS)
        self._latched: set[str] = set()
        self._timeline: list[tuple[float, int, Callable[[], None]]] = []
        self._timeline_seq = itertools.count()
        self._advancing = False
        self._log(f"boot: firmware {firmware_version} slot {self.firmware.active}")

    @property
    def identity(self) -> TerminalIdentity:
        """Who the terminal is; the firmware version is that of the active slot."""
        return dataclasses.replace(self._identity, firmware_version=self.firmware.active_version)

    @property
    def uptime_s(self) -> int:
        """Seconds since the last boot."""
        return int(self._t - self._boot_t)

    @property
    def elapsed_s(self) -> float:
        """Simulated seconds since the terminal was created (scenario time)."""
        return self._t - self._start_t

    def wall_time(self) -> float:
        """The terminal's own clock as Unix time (it drifts: see ``clock_offset``)."""
        return self._wall0 + (self._t - self._start_t) + self.clock_offset

    def log(self, text: str) -> None:
        """Write a line to the terminal's log journal, stamped with the terminal's clock."""
        self.advance()
        self._log(text)

    def _log(self, text: str) -> None:
        self.journal.write(self.wall_time(), text)

    # --- faults -------------------------------------------------------------------------

    def inject(self, fault: FaultName | str) -> None:
        """Make ``fault`` happen now: health changes and a fault is queued for the agent."""
        name = FaultName(fault)
        self.advance()
        self.active.add(name)
        if name is FaultName.PAPER_OUT:
            self.paper_lines = 0
        elif name is FaultName.LOW_BATTERY and self.battery is not None:
            self.battery, self.charging = min(self.battery, 9.0), False
            self._latched.add("battery.low")
        elif name is FaultName.CLOCK_DRIFT:
            self.clock_offset += 120.0
        elif name is FaultName.STORAGE_FULL:
            self.storage = 95.0
        elif name is FaultName.OVERHEAT:
            self.temperature = 68.0
        elif name is FaultName.DUKPT_EXHAUSTED:
            self.dukpt_remaining = 0
        if name is FaultName.FIRMWARE_BOOT_LOOP:
            return  # nothing happens until an image is activated
        self._log(f"fault: {name}")
        self._raise(name)

    def clear(self, fault: FaultName | str) -> None:
        """Repair ``fault`` (reload the roll, clear the jam, plug the charger ...)."""
        name = FaultName(fault)
        self.advance()
        self.active.discard(name)
        if name is FaultName.PAPER_OUT:
            self.paper_lines = ROLL_LINES
            self.paper_rolls += 1
            self._latched.discard("printer.paper_low")
        elif name is FaultName.LOW_BATTERY:
            self.charging = True
        elif name is FaultName.CLOCK_DRIFT:
            self.clock_offset = 0.0
        elif name is FaultName.STORAGE_FULL:
            self.storage = 40.0
        elif name is FaultName.OVERHEAT:
            self.temperature = 35.0
        elif name is FaultName.DUKPT_EXHAUSTED:
            self.dukpt_remaining = DUKPT_PER_KEY
            self._latched.discard("keys.dukpt_exhausted")
        self._log(f"fault cleared: {name}")

    def ramp_reader_errors(self, start_rate: float, end_rate: float, over_s: float) -> None:
        """Let the card-read error rate move linearly from ``start_rate`` to ``end_rate``."""
        self.advance()
        self._ramp = ErrorRamp(self._t, self._t + over_s, start_rate, end_rate)

    def _raise(self, name: FaultName, detail: str | None = None) -> None:
        self.queue_fault(fault_event(name, detail))

    def _raise_once(self, key: str, fault: DetectedFault) -> None:
        if key not in self._latched:
            self._latched.add(key)
            self.queue_fault(fault)

    def queue_fault(self, fault: DetectedFault) -> None:
        """Queue a fault for the agent's next READ FAULTS."""
        self._fault_seq += 1
        self._faults.append((self._fault_seq, fault))

    def pending_faults(self, acknowledged_through: int) -> list[tuple[int, DetectedFault]]:
        """Drop faults the agent acknowledged; return the rest, oldest first."""
        self.advance()
        # An acknowledgement above anything issued comes from before a reset of the
        # numbering (a replaced terminal): it acknowledges nothing.
        if acknowledged_through <= self._fault_seq:
            while self._faults and self._faults[0][0] <= acknowledged_through:
                self._faults.popleft()
        return list(self._faults)

    # --- time ---------------------------------------------------------------------------

    def schedule(self, at_s: float, action: Callable[[], None]) -> None:
        """Run ``action`` when scenario time (seconds since creation) reaches ``at_s``."""
        heapq.heappush(self._timeline, (self._start_t + at_s, next(self._timeline_seq), action))

    def advance(self) -> None:
        """Bring the state up to the clock's current time."""
        if self._advancing:
            return  # a scheduled action that injects a fault must not re-enter the loop
        self._advancing = True
        try:
            now = self._clock()
            self._run_due()
            while self._t + TICK_S <= now:
                self._t += TICK_S
                self._run_due()
                self._tick()
        finally:
            self._advancing = False

    def _run_due(self) -> None:
        while self._timeline and self._timeline[0][0] <= self._t:
            _, _, action = heapq.heappop(self._timeline)
            action()

    def _tick(self) -> None:
        rng = self._rng
        self._tick_battery()
        if FaultName.OVERHEAT not in self.active:
            self.temperature += rng.uniform(-0.2, 0.2) + (33 - self.temperature) * 0.02
        if self.rssi is not None and self.base_rssi is not None:
            step = rng.choice((-1, 0, 1)) + round((self.base_rssi - self.rssi) * 0.1)
            self.rssi = max(-95, min(-35, self.rssi + step))
        self.clock_offset += self.drift_ppm * 1e-6 * TICK_S
        self.memory = min(95.0, max(20.0, self.memory + rng.uniform(-0.3, 0.3)))
        if self._t - self._settled_t >= SETTLEMENT_EVERY_S:
            self.settle()
        if FaultName.REBOOT_LOOP in self.active and self._t - self._boot_t >= REBOOT_LOOP_PERIOD_S:
            self._raise(FaultName.REBOOT_LOOP)
            self._restart(RebootReason.WATCHDOG)
        if (
            self._activated_t is not None
            and self.firmware.pending_confirm
            and self._t - self._activated_t >= CONFIRM_TIMEOUT_S
        ):
            self._roll_back_on_own(f"not confirmed within {CONFIRM_TIMEOUT_S / 60:.0f} min")
        if rng.random() < self.transactions_per_hour * TICK_S / 3600:
            self._transaction()

    def _tick_battery(self) -> None:
        if self.battery is None:
            return
        rng = self._rng
        if FaultName.LOW_BATTERY not in self.active:
            # The merchant docks the terminal now and then, and always when it is low.
            if self.charging and (self.battery >= 100 or rng.random() < 1 / 720):
                self.charging = False
            elif not self.charging and (self.battery < 20 or rng.random() < 1 / 1080):
                self.charging = self.battery < 20 or rng.random() < 0.5
        rate = 0.12 if self.charging else -0.02
        before = self.battery
        self.battery = min(100.0, max(0.0, self.battery + rate))
        if self.charging:
            # A charge cycle is 100 % of capacity charged, however many sessions it takes.
            self._charged_pct += self.battery - before
            if self._charged_pct >= 100:
                self._charged_pct -= 100
                self.battery_cycles += 1
        if self.battery < 15 and not self.charging:
            self._raise_once("battery.low", fault_event(FaultName.LOW_BATTERY))
        elif self.battery > 20:
            self._latched.discard("battery.low")

    def reader_error_rate_now(self) -> float:
        """The card-read error rate at this moment: base, firmware, wear, ramp and faults."""
        if FaultName.READER_DEFECTIVE in self.active:
            return 1.0
        if FaultName.READER_ERRORS in self.active:
            return FAILING_READER_RATE
        base = self.reader_error_rate if self._ramp is None else self._ramp.at(self._t)
        base = max(base, self.firmware.forced_reader_error_rate or 0.0)
        return min(1.0, base + self.insertions * READER_WEAR_PER_INSERTION)

    def _transaction(self) -> None:
        rng = self._rng
        interface = choose_interface(rng)
        error_rate = self.reader_error_rate_now()
        if interface == "chip" and FaultName.CHIP_ERROR in self.active:
            error_rate = max(error_rate, 0.5)
        if error_rate > READER_FAULT_RATE:
            self._raise_once(
                "card_reader.read_errors",
                fault_event(FaultName.READER_ERRORS, f"card read error rate {error_rate:.0%}"),
            )
        elif error_rate <= READER_OK_RATE:
            self._latched.discard("card_reader.read_errors")
        self.transactions_total += 1
        reads, errors = read_attempts(rng, error_rate)
        for counts in (self.readers[interface], self.lifetime[interface]):
            counts.reads += reads
            counts.errors += errors
        if interface == "chip":
            self.insertions += reads
        for attempt in range(1, errors + 1):
            # A careless vendor log line: the full card number. The agent must scrub it.
            self._log(f"emv: {interface} read error pan={fake_pan(rng)} retry={attempt}")
        if errors == reads:
            self.failed += 1
            self._log(f"sale abandoned: card not readable after {reads} tries")
            return
        if self.dukpt_remaining == 0 or FaultName.KEY_MISSING in self.active:
            self.failed += 1
            return
        self.dukpt_remaining -= 1
        if self.dukpt_remaining == 0:
            self.active.add(FaultName.DUKPT_EXHAUSTED)
            self._raise_once("keys.dukpt_exhausted", fault_event(FaultName.DUKPT_EXHAUSTED))
        if self.host_unreachable():
            self.failed += 1
            self.decline_codes["91"] = self.decline_codes.get("91", 0) + 1
            self._log("host: connect timeout, transaction failed (91)")
            return
        if rng.random() < 0.05:
            self.declined += 1
            code = rng.choice(("05", "51", "55"))
            self.decline_codes[code] = self.decline_codes.get(code, 0) + 1
            self._log(f"sale declined rc={code} via {interface}")
        else:
            self.approved += 1
            self.unsettled += 1
            self.storage = min(99.0, self.storage + 0.001)
            self._log(f"sale approved via {interface} batch={self.unsettled}")
        self._print_receipt()

    def _print_receipt(self) -> None:
        if self.printer_status() not in (PrinterStatus.OK, PrinterStatus.PAPER_LOW):
            return
        used = min(self.paper_lines, LINES_PER_RECEIPT)
        self.paper_lines -= used
        self.lines_printed += used
        if self.paper_lines == 0:
            self.active.add(FaultName.PAPER_OUT)
            self._raise(FaultName.PAPER_OUT)
        elif self.paper_lines < ROLL_LINES // 10:
            self._raise_once(
                "printer.paper_low",
                DetectedFault(
                    "printer.paper_low", Component.PRINTER, Severity.INFO, "paper roll low"
                ),
            )

    # --- what the merchant does ---------------------------------------------------------

    def begin_sale(self) -> None:
        """A cardholder is paying: reboots and updates must wait."""
        self.advance()
        self.sale_in_progress = True

    def end_sale(self) -> None:
        """The sale in progress is over."""
        self.advance()
        self.sale_in_progress = False

    def settle(self) -> None:
        """End-of-day: the batch goes to the acquirer and the counters start again."""
        self._settled_t = self._t
        self.unsettled = 0
        self.approved = self.declined = self.failed = 0
        self.decline_codes.clear()
        self.settlements += 1
        self.storage = max(10.0, self.storage - 1.0)
        self.active.discard(FaultName.JOURNAL_FULL)
        self._log("end-of-day: batch settled")

    # --- what the terminal reports and does ----------------------------------------------

    def host_unreachable(self) -> bool:
        """True while the acquirer host cannot be used."""
        return bool(self.active & {FaultName.HOST_DOWN, FaultName.HOST_NOT_RESPONDING})

    def printer_status(self) -> PrinterStatus:
        """The printer's state, most severe condition first."""
        for fault, status in (
            (FaultName.PRINTER_JAM, PrinterStatus.JAM),
            (FaultName.COVER_OPEN, PrinterStatus.COVER_OPEN),
            (FaultName.OVERHEAT, PrinterStatus.OVERHEAT),
        ):
            if fault in self.active:
                return status
        if self.paper_lines == 0:
            return PrinterStatus.NO_PAPER
        if self.paper_lines < ROLL_LINES // 10:
            return PrinterStatus.PAPER_LOW
        return PrinterStatus.OK

    def health(self) -> HealthMetrics:
        """Every metric, quantised to the precision the command set carries."""
        self.advance()
        return health_reading(self)

    def counters(self) -> TerminalCounters:
        """Lifetime wear counters."""
        self.advance()
        return counters_reading(self)

    def latency_ms(self) -> float:
        """Round trip to the acquirer host."""
        # Derived from the tick, not drawn from the generator: reading health must not
        # change what the terminal does next.
        return float(80 + int(self._t / TICK_S) * 7919 % 40)

    def print_line(self, text: str) -> bool:
        """Print ``text``; False if the printer cannot."""
        self.advance()
        if self.printer_status() not in (PrinterStatus.OK, PrinterStatus.PAPER_LOW):
            return False
        self.printed.append(text)
        self.paper_lines = max(0, self.paper_lines - 1)
        self.lines_printed += 1
        return True

    def sync_clock(self) -> float:
        """Set the clock right; returns the offset it had, in seconds."""
        self.advance()
        previous, self.clock_offset = self.clock_offset, 0.0
        self.active.discard(FaultName.CLOCK_DRIFT)
        self._log(f"clock set by the agent, was off by {previous:.3f} s")
        return previous

    def check_idle(self) -> None:
        """Refuse (``TerminalRefusal``) if a reboot would interrupt the merchant's trading."""
        self.advance()
        if self.sale_in_progress:
            raise TerminalRefusal(ResultCode.BUSY)
        if self.unsettled:
            raise TerminalRefusal(ResultCode.BATCH_UNSETTLED)

    def reboot(self) -> None:
        """Restart on request; refused during a sale or with an unsettled batch."""
        self.check_idle()
        self._restart(RebootReason.REMOTE)

    def _restart(self, reason: RebootReason, *, activation: bool = False) -> None:
        if self.firmware.pending_confirm and not activation:
            # The trial slot did not get confirmed before this reboot: go back.
            self._roll_back_on_own("not confirmed before the next reboot")
            return
        self._boot_t = self._t
        self.reboot_reason = reason
        self.reboots += 1
        self.readers = {name: ReadCounts() for name in self.readers}
        self.tls_failures = 0
        self.sale_in_progress = False
        self._log(f"boot: reason {reason} firmware {self.firmware.active_version}")

    def activate_firmware(self) -> None:
        """Boot the verified image; a boot-looping image is rolled back after 3 tries."""
        self.check_idle()
        self.firmware.activate(force_boot_loop=FaultName.FIRMWARE_BOOT_LOOP in self.active)
        self.active.discard(FaultName.FIRMWARE_BOOT_LOOP)
        self._activated_t = self._t
        if self.firmware.boot_loops[self.firmware.active]:
            for _ in range(BOOT_ATTEMPTS):
                self._restart(RebootReason.CRASH, activation=True)
            self._roll_back_on_own(f"new image failed to boot {BOOT_ATTEMPTS} times")
            return
        self._restart(RebootReason.FIRMWARE_UPDATE, activation=True)
        if self.firmware.crashes[self.firmware.active]:
            self._log("payment application crashed after boot")
            self.queue_fault(
                DetectedFault(
                    "firmware.app_crash",
                    Component.FIRMWARE,
                    Severity.CRITICAL,
                    f"payment application crashed after booting {self.firmware.active_version}",
                )
            )

    def rollback_firmware(self) -> None:
        """Go back to the previous slot on request."""
        self.check_idle()
        self.firmware.rollback("rolled back on request")
        self._activated_t = None
        self._restart(RebootReason.FIRMWARE_UPDATE, activation=True)

    def _roll_back_on_own(self, why: str) -> None:
        self.firmware.rollback(why)
        self._activated_t = None
        self._raise(FaultName.FIRMWARE_BOOT_LOOP, f"firmware rolled back: {why}")
        self._restart(RebootReason.WATCHDOG, activation=True)
