"""The diagnostics a simulated terminal runs on request, with a check per item it looked at."""

from __future__ import annotations

from posfleet.agent.drivers.base import DiagnosticCheck, DiagnosticResult, DiagnosticTest
from posfleet.contract import PrinterStatus
from posfleet.simulator.faults import FaultName
from posfleet.simulator.terminal_model import READER_FAULT_RATE, SimulatedTerminal


def run_diagnostic(t: SimulatedTerminal, test: DiagnosticTest) -> DiagnosticResult:
    """Run ``test`` against the terminal's current state."""
    t.advance()
    if test is DiagnosticTest.PRINTER:
        return _printer(t)
    if test is DiagnosticTest.CARD_READER:
        return _card_reader(t)
    if test is DiagnosticTest.HOST_PING:
        return _host_ping(t)
    checks = [
        _printer_check(t),
        *_reader_checks(t),
        _host_check(t),
        DiagnosticCheck("tamper", FaultName.TAMPER not in t.active, "tamper switch"),
        DiagnosticCheck(
            "pin_pad", FaultName.PIN_PAD_DEFECTIVE not in t.active, "PIN pad self-check"
        ),
        DiagnosticCheck(
            "keys",
            t.dukpt_remaining > 0 and FaultName.KEY_MISSING not in t.active,
            f"{t.dukpt_remaining} DUKPT values left",
        ),
        DiagnosticCheck("storage", t.storage < 90, f"{t.storage:.1f}% used"),
        DiagnosticCheck("clock", abs(t.clock_offset) < 60, f"offset {t.clock_offset:.1f} s"),
    ]
    if t.battery is not None:
        checks.append(
            DiagnosticCheck(
                "battery", t.battery >= 15 or t.charging, f"{t.battery:.0f}% charging={t.charging}"
            )
        )
    failed = [c.name for c in checks if not c.passed]
    detail = "failed: " + ", ".join(failed) if failed else "all checks passed"
    return DiagnosticResult(test, not failed, detail, checks=checks)


def _printer_check(t: SimulatedTerminal) -> DiagnosticCheck:
    status = t.printer_status()
    ok = status in (PrinterStatus.OK, PrinterStatus.PAPER_LOW)
    return DiagnosticCheck("printer", ok, f"printer {status.value}, {t.paper_lines} lines left")


def _printer(t: SimulatedTerminal) -> DiagnosticResult:
    status = t.printer_status()
    printed = t.print_line("*** posfleet printer test ***")
    checks = [
        _printer_check(t),
        DiagnosticCheck("test_line", printed, "test line printed" if printed else "not printed"),
    ]
    return DiagnosticResult(
        DiagnosticTest.PRINTER, printed, f"printer {status.value}", None, checks
    )


def _reader_checks(t: SimulatedTerminal) -> list[DiagnosticCheck]:
    checks = []
    defective = FaultName.READER_DEFECTIVE in t.active
    for name, reader in t.readers.items():
        rate = reader.errors / reader.reads if reader.reads else 0.0
        bad = defective or rate > READER_FAULT_RATE
        if name == "chip" and FaultName.CHIP_ERROR in t.active:
            bad = True
        checks.append(
            DiagnosticCheck(name, not bad, f"{reader.errors}/{reader.reads} reads failed")
        )
    return checks


def _card_reader(t: SimulatedTerminal) -> DiagnosticResult:
    checks = _reader_checks(t)
    if FaultName.READER_ERRORS in t.active:
        checks.append(DiagnosticCheck("read_head", False, "read head dirty or worn"))
    failed = [c.name for c in checks if not c.passed]
    detail = "reader errors on " + ", ".join(failed) if failed else "reader ok"
    return DiagnosticResult(DiagnosticTest.CARD_READER, not failed, detail, None, checks)


def _host_check(t: SimulatedTerminal) -> DiagnosticCheck:
    if FaultName.HOST_DOWN in t.active:
        return DiagnosticCheck("host", False, "no connection to the acquirer host")
    if FaultName.HOST_NOT_RESPONDING in t.active:
        return DiagnosticCheck("host", False, "acquirer host does not respond")
    return DiagnosticCheck("host", True, f"answered in {t.latency_ms():.0f} ms")


def _host_ping(t: SimulatedTerminal) -> DiagnosticResult:
    check = _host_check(t)
    if not check.passed:
        return DiagnosticResult(
            DiagnosticTest.HOST_PING, False, "acquirer host unreachable", None, [check]
        )
    latency = int(t.latency_ms())
    return DiagnosticResult(
        DiagnosticTest.HOST_PING, True, "acquirer host answered", latency, [check]
    )
