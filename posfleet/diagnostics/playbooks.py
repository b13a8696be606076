"""Diagnostic playbooks: named sequences of remote commands and the verdict they lead to.

Pure data and pure verdict functions; :mod:`posfleet.diagnostics.playbook_runner` sends
the commands and records the outcome. A verdict reads each step's outcome (the command's
status and output) and says what is wrong and what to tell the merchant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StepOutcome:
    """What one command returned (``status`` is the contract's, or ``timed_out``)."""

    command: str
    status: str
    output: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None

    @property
    def passed(self) -> bool:
        """The command ran and its test (if it is one) passed."""
        if self.status != "ok":
            return False
        passed = self.output.get("passed", self.output.get("ok", True))
        return bool(passed)


@dataclass(frozen=True)
class Verdict:
    """The conclusion of a run: what is wrong, and the steps for the merchant."""

    summary: str
    remedy: tuple[str, ...] = ()
    healthy: bool = False


@dataclass(frozen=True)
class PlaybookStep:
    """One command of a playbook."""

    command: str
    label: str
    args: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Playbook:
    """A named remote-diagnostic sequence."""

    name: str
    title: str
    steps: tuple[PlaybookStep, ...]
    verdict: Callable[[Mapping[str, StepOutcome]], Verdict]


def _card_payments_verdict(steps: Mapping[str, StepOutcome]) -> Verdict:
    host = steps["host_ping"]
    reader = steps["card_reader_test"]
    if not host.passed:
        return Verdict(
            "The terminal cannot reach the acquirer host: card payments fail at authorisation.",
            (
                "Check that the router is on and the network cable is plugged in",
                "Restart the router, then the terminal",
                "Switch to Ethernet or 4G if the terminal has them",
            ),
        )
    if not reader.passed:
        return Verdict(
            "The card reader fails its self-test: cards cannot be read.",
            (
                "Clean the chip and magstripe reader with a cleaning card",
                "If the reader still fails, swap the terminal",
            ),
        )
    return Verdict(
        "Card reader and acquirer host both pass: the terminal is healthy; the problem is"
        " probably the card or the issuer.",
        ("Ask the cardholder to try another card or contactless",),
        healthy=True,
    )


def _single_test_verdict(
    command: str, healthy: str, broken: str, remedy: tuple[str, ...]
) -> Callable[[Mapping[str, StepOutcome]], Verdict]:
    def verdict(steps: Mapping[str, StepOutcome]) -> Verdict:
        if steps[command].passed:
            return Verdict(healthy, (), healthy=True)
        return Verdict(broken, remedy)

    return verdict


BUILTIN_PLAYBOOKS: dict[str, Playbook] = {
    playbook.name: playbook
    for playbook in (
        Playbook(
            "card_payments_failing",
            "Card payments failing",
            (
                PlaybookStep("read_health", "read the terminal's health"),
                PlaybookStep("card_reader_test", "test the card reader"),
                PlaybookStep("host_ping", "ping the acquirer host"),
            ),
            _card_payments_verdict,
        ),
        Playbook(
            "printer_check",
            "Printer check",
            (PlaybookStep("print_test", "print a test page"),),
            _single_test_verdict(
                "print_test",
                "The test page printed: the printer works.",
                "The printer cannot print a test page.",
                (
                    "Reload the paper roll and close the cover",
                    "Power the terminal off for 10 seconds, then print again",
                ),
            ),
        ),
        Playbook(
            "clock_resync",
            "Resynchronise the clock",
            (PlaybookStep("sync_clock", "set the clock from network time"),),
            _single_test_verdict(
                "sync_clock",
                "The clock is synchronised.",
                "The terminal refused to set its clock.",
                ("Restart the terminal and try again",),
            ),
        ),
        Playbook(
            "self_test",
            "Full self-test",
            (PlaybookStep("self_test", "run every self-test", timeout_s=60.0),),
            _single_test_verdict(
                "self_test",
                "Every self-test passed.",
                "A self-test failed; see the step output.",
                ("Restart the terminal; if the self-test still fails, swap it",),
            ),
        ),
    )
}
