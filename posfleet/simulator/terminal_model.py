"""A simulated payment terminal: a state model that evolves with time and takes faults.

Time advances in fixed ticks of simulated seconds, whatever the pattern of reads, so a
terminal built with the same seed and read at the same clock values reports the same
numbers (tests and demos are reproducible). The clock is injectable.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from posfleet.agent.drivers.base import (
    DetectedFault,
    DiagnosticResult,
    DiagnosticTest,
    TerminalIdentity,
)
from posfleet.contract import (
    Battery,
    CardReader,
    Component,
    HealthMetrics,
    Keys,
    Network,
    NetworkType,
    Printer,
    PrinterStatus,
    ReaderCounters,
    RebootReason,
    Severity,
    Transactions,
)

TICK_S = 10.0
ROLL_LINES = 1500
LINES_PER_RECEIPT = 24
MAX_QUEUED_FAULTS = 256
SETTLEMENT_EVERY_S = 24 * 3600.0


class FaultName(StrEnum):
    """Faults that can be injected into a simulated terminal at run time."""

    PAPER_OUT = "paper_out"
    PRINTER_JAM = "printer_jam"
    COVER_OPEN = "cover_open"
    OVERHEAT = "overheat"
    HOST_DOWN = "host_down"
    READER_ERRORS = "reader_errors"
    TAMPER = "tamper"
    LOW_BATTERY = "low_battery"
    CLOCK_DRIFT = "clock_drift"
    STORAGE_FULL = "storage_full"


_FAULT_EVENTS: dict[FaultName, tuple[str, Component, Severity, str, int | None]] = {
    FaultName.PAPER_OUT: (
        "printer.no_paper",
        Component.PRINTER,
        Severity.ERROR,
        "paper roll empty",
        0xCC,
    ),
    FaultName.PRINTER_JAM: ("printer.jam", Component.PRINTER, Severity.ERROR, "paper jam", 0xCC),
    FaultName.COVER_OPEN: (
        "printer.cover_open",
        Component.PRINTER,
        Severity.WARNING,
        "printer cover open",
        0xCC,
    ),
    FaultName.OVERHEAT: (
        "temperature.overheat",
        Component.TEMPERATURE,
        Severity.ERROR,
        "terminal above 60 C, printer stopped",
        None,
    ),
    FaultName.HOST_DOWN: (
        "network.host_unreachable",
        Component.NETWORK,
        Severity.ERROR,
        "acquirer host not reachable",
        0xA3,
    ),
    FaultName.READER_ERRORS: (
        "card_reader.read_errors",
        Component.CARD_READER,
        Severity.WARNING,
        "card reads failing",
        0x64,
    ),
    FaultName.TAMPER: (
        "tamper.detected",
        Component.TAMPER,
        Severity.CRITICAL,
        "tamper switch tripped; terminal must be replaced",
        None,
    ),
    FaultName.LOW_BATTERY: (
        "battery.low",
        Component.BATTERY,
        Severity.WARNING,
        "battery below 15% and not charging",
        None,
    ),
    FaultName.CLOCK_DRIFT: (
        "clock.drift",
        Component.CLOCK,
        Severity.WARNING,
        "clock off by more than 60 s",
        None,
    ),
    FaultName.STORAGE_FULL: (
        "storage.full",
        Component.STORAGE,
        Severity.WARNING,
        "storage above 90%",
        0xB1,
    ),
}


@dataclass
class _Reader:
    reads: int = 0
    errors: int = 0


class SimulatedTerminal:
    """One terminal's hardware state; the responder serves it over the command set."""

    def __init__(
        self,
        serial: str,
        *,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
        portable: bool = True,
        merchant_id: str = "",
        firmware_version: str = "2.4.1",
        reader_error_rate: float = 0.01,
        transactions_per_hour: float = 30.0,
    ) -> None:
        self._rng = random.Random(seed)
        self._clock = clock
        self._t = clock()
        self._boot_t = self._t
        self._settled_t = self._t
        rng = self._rng
        self.identity = TerminalIdentity(
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
        self.temperature = rng.uniform(28, 36)
        self.paper_lines = rng.randrange(ROLL_LINES // 3, ROLL_LINES)
        self.lines_printed = rng.randrange(10_000, 500_000)
        self.readers = {"chip": _Reader(), "magstripe": _Reader(), "contactless": _Reader()}
        self.insertions = rng.randrange(1_000, 50_000)
        self.base_rssi = rng.randrange(-72, -50) if portable else None
        self.rssi = self.base_rssi
        self.tls_failures = 0
        self.storage = rng.uniform(20, 60)
        self.memory = rng.uniform(30, 55)
        self.clock_offset = rng.uniform(-0.5, 0.5)
        self.drift_ppm = rng.uniform(-30, 30)
        self.dukpt_remaining = 1_000_000 - rng.randrange(0, 200_000)
        self.key_expiry = date(2027, 1, 1) + timedelta(days=rng.randrange(0, 700))
        self.approved = self.declined = self.failed = self.unsettled = 0
        self.decline_codes: dict[str, int] = {}
        self.reboot_reason = RebootReason.POWER_ON
        self.reboots = 0
        self.printed: list[str] = []
        self._fault_seq = 0
        self._faults: deque[tuple[int, DetectedFault]] = deque(maxlen=MAX_QUEUED_FAULTS)
        self._battery_low_latched = False
        self._paper_low_latched = False

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
            self._battery_low_latched = True
        elif name is FaultName.CLOCK_DRIFT:
            self.clock_offset += 120.0
        elif name is FaultName.STORAGE_FULL:
            self.storage = 95.0
        elif name is FaultName.OVERHEAT:
            self.temperature = 68.0
        self._raise(name)

    def clear(self, fault: FaultName | str) -> None:
        """Repair ``fault`` (reload the roll, clear the jam, plug the charger ...)."""
        name = FaultName(fault)
        self.advance()
        self.active.discard(name)
        if name is FaultName.PAPER_OUT:
            self.paper_lines = ROLL_LINES
            self._paper_low_latched = False
        elif name is FaultName.LOW_BATTERY:
            self.charging = True
        elif name is FaultName.CLOCK_DRIFT:
            self.clock_offset = 0.0
        elif name is FaultName.STORAGE_FULL:
            self.storage = 40.0
        elif name is FaultName.OVERHEAT:
            self.temperature = 35.0

    def _raise(self, name: FaultName, detail: str | None = None) -> None:
        code, component, severity, default_detail, zvt = _FAULT_EVENTS[name]
        self.queue_fault(DetectedFault(code, component, severity, detail or default_detail, zvt))

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

    def advance(self) -> None:
        """Bring the state up to the clock's current time."""
        now = self._clock()
        while self._t + TICK_S <= now:
            self._t += TICK_S
            self._tick()

    def _tick(self) -> None:
        rng = self._rng
        if self.battery is not None:
            if FaultName.LOW_BATTERY not in self.active:
                # The merchant docks the terminal now and then, and always when it is low.
                if self.charging and (self.battery >= 100 or rng.random() < 1 / 720):
                    self.charging = False
                elif not self.charging and (self.battery < 20 or rng.random() < 1 / 1080):
                    self.charging = self.battery < 20 or rng.random() < 0.5
            rate = 0.12 if self.charging else -0.02
            self.battery = min(100.0, max(0.0, self.battery + rate))
            if self.battery < 15 and not self.charging and not self._battery_low_latched:
                self._battery_low_latched = True
                self._raise(FaultName.LOW_BATTERY)
            elif self.battery > 20:
                self._battery_low_latched = False
        if FaultName.OVERHEAT not in self.active:
            self.temperature += rng.uniform(-0.2, 0.2) + (33 - self.temperature) * 0.02
        if self.rssi is not None and self.base_rssi is not None:
            step = rng.choice((-1, 0, 1)) + round((self.base_rssi - self.rssi) * 0.1)
            self.rssi = max(-95, min(-35, self.rssi + step))
        self.clock_offset += self.drift_ppm * 1e-6 * TICK_S
        self.memory = min(95.0, max(20.0, self.memory + rng.uniform(-0.3, 0.3)))
        if self._t - self._settled_t >= SETTLEMENT_EVERY_S:
            self._settle()
        if rng.random() < self.transactions_per_hour * TICK_S / 3600:
            self._transaction()

    def _transaction(self) -> None:
        rng = self._rng
        interface = rng.choices(("contactless", "chip", "magstripe"), (60, 35, 5))[0]
        reader = self.readers[interface]
        reader.reads += 1
        if interface == "chip":
            self.insertions += 1
        error_rate = 0.4 if FaultName.READER_ERRORS in self.active else self.reader_error_rate
        if rng.random() < error_rate:
            reader.errors += 1
            self.failed += 1
            return
        self.dukpt_remaining = max(0, self.dukpt_remaining - 1)
        if FaultName.HOST_DOWN in self.active:
            self.failed += 1
            self.decline_codes["91"] = self.decline_codes.get("91", 0) + 1
            return
        if rng.random() < 0.05:
            self.declined += 1
            code = rng.choice(("05", "51", "55"))
            self.decline_codes[code] = self.decline_codes.get(code, 0) + 1
        else:
            self.approved += 1
            self.unsettled += 1
            self.storage = min(99.0, self.storage + 0.001)
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
        elif self.paper_lines < ROLL_LINES // 10 and not self._paper_low_latched:
            self._paper_low_latched = True
            self.queue_fault(
                DetectedFault(
                    "printer.paper_low", Component.PRINTER, Severity.INFO, "paper roll low"
                )
            )

    def _settle(self) -> None:
        self._settled_t = self._t
        self.unsettled = 0
        self.storage = max(10.0, self.storage - 1.0)

    # --- what the terminal reports and does ----------------------------------------------

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
        battery = None
        if self.battery is not None:
            battery = Battery(
                percent=round(self.battery, 1),
                charging=self.charging,
                health_percent=round(100 - self.battery_cycles / 20, 1),
                cycles=self.battery_cycles,
            )
        host_up = FaultName.HOST_DOWN not in self.active
        return HealthMetrics(
            battery=battery,
            temperature_c=round(self.temperature, 1),
            printer=Printer(status=self.printer_status(), lines_printed=self.lines_printed),
            card_reader=CardReader(
                chip=ReaderCounters(**vars(self.readers["chip"])),
                magstripe=ReaderCounters(**vars(self.readers["magstripe"])),
                contactless=ReaderCounters(**vars(self.readers["contactless"])),
                insertions_total=self.insertions,
            ),
            network=Network(
                type=NetworkType.WIFI if self.portable else NetworkType.ETHERNET,
                rssi_dbm=self.rssi,
                host_reachable=host_up,
                tls_failures=self.tls_failures,
                latency_ms=self._latency_ms() if host_up else None,
            ),
            storage_used_pct=round(self.storage, 1),
            memory_used_pct=round(self.memory, 1),
            clock_offset_s=round(self.clock_offset, 3),
            keys=Keys(dukpt_remaining=self.dukpt_remaining, key_expiry=self.key_expiry),
            tamper=FaultName.TAMPER in self.active,
            transactions=Transactions(
                approved=self.approved,
                declined=self.declined,
                failed=self.failed,
                unsettled_batch=self.unsettled,
                decline_codes=dict(self.decline_codes),
            ),
            uptime_s=int(self._t - self._boot_t),
            reboot_reason=self.reboot_reason,
        )

    def _latency_ms(self) -> float:
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
        return previous

    def reboot(self) -> None:
        """Restart: counters since reboot start again from zero."""
        self.advance()
        self._boot_t = self._t
        self.reboot_reason = RebootReason.REMOTE
        self.reboots += 1
        self.readers = {name: _Reader() for name in self.readers}
        self.tls_failures = 0

    def run_diagnostic(self, test: DiagnosticTest) -> DiagnosticResult:
        """Run one self-test against the current state."""
        self.advance()
        if test is DiagnosticTest.PRINTER:
            status = self.printer_status()
            ok = self.print_line("*** posfleet printer test ***")
            return DiagnosticResult(test, ok, f"printer {status.value}")
        if test is DiagnosticTest.CARD_READER:
            bad = FaultName.READER_ERRORS in self.active
            return DiagnosticResult(test, not bad, "reader errors" if bad else "reader ok")
        if test is DiagnosticTest.HOST_PING:
            if FaultName.HOST_DOWN in self.active:
                return DiagnosticResult(test, False, "acquirer host unreachable")
            return DiagnosticResult(test, True, "acquirer host answered", int(self._latency_ms()))
        broken = sorted(self.active)
        return DiagnosticResult(test, not broken, ", ".join(broken) or "all checks passed")
