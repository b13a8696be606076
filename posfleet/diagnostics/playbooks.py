"""Diagnostic playbooks: named sequences of remote commands and the verdict they lead to.

Pure data and pure functions; :mod:`posfleet.diagnostics.playbook_runner` sends the
commands and records the outcome. Each step says what its failure means and what to do
about it; a verdict reads every step's outcome (the command's status and output) and
says what is wrong and what to tell the merchant. :func:`step_finding` puts what one
step saw into one line for staff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# -- visible text ---------------------------------------------------------------------
_NO_ANSWER = "no answer from the terminal"
_REFUSED = "the terminal {status} the command"
_CLOCK_SET = "the clock was {offset:+.1f} s off; it is now set from network time"
_HEALTH_READ = "health read: {fields} values"
_DONE = "done"
_FAILED = "failed"


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


def _failed_checks(output: Mapping[str, Any]) -> list[str]:
    checks = output.get("checks")
    if not isinstance(checks, list):
        return []
    found: list[str] = []
    for check in checks:
        if isinstance(check, Mapping) and check.get("passed") is False:
            detail = check.get("detail") or check.get("name")
            if detail:
                found.append(str(detail))
    return found


def step_finding(outcome: StepOutcome) -> str:
    """What the step saw, in one line: the failed checks, the test's detail, or the error."""
    if outcome.status == "timed_out":
        return _NO_ANSWER
    if outcome.status in ("rejected", "expired"):
        refused = _REFUSED.format(status=outcome.status)
        return f"{refused}: {outcome.error}" if outcome.error else refused
    failed = _failed_checks(outcome.output)
    if failed and not outcome.passed:
        return "; ".join(failed)
    detail = outcome.output.get("detail")
    if isinstance(detail, str) and detail:
        return detail
    offset = outcome.output.get("previous_offset_s")
    if isinstance(offset, int | float) and not isinstance(offset, bool):
        return _CLOCK_SET.format(offset=offset)
    if outcome.command == "read_health" and outcome.passed:
        return _HEALTH_READ.format(fields=len(outcome.output))
    if outcome.error:
        return outcome.error
    return _DONE if outcome.passed else _FAILED


@dataclass(frozen=True)
class Verdict:
    """The conclusion of a run: what is wrong, and the steps for the merchant."""

    summary: str
    remedy: tuple[str, ...] = ()
    healthy: bool = False


@dataclass(frozen=True)
class PlaybookStep:
    """One command of a playbook, and what it means when it fails."""

    command: str
    label: str
    args: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 30.0
    problem: str = ""
    """What a failure of this step means, as the verdict's summary."""
    remedy: tuple[str, ...] = ()
    """What to do when this step fails."""


@dataclass(frozen=True)
class Playbook:
    """A named remote-diagnostic sequence."""

    name: str
    title: str
    steps: tuple[PlaybookStep, ...]
    verdict: Callable[[Mapping[str, StepOutcome]], Verdict]


def first_failure_verdict(
    steps: Sequence[PlaybookStep],
    healthy: str,
    healthy_remedy: tuple[str, ...] = (),
    *,
    priority: Sequence[str] = (),
) -> Callable[[Mapping[str, StepOutcome]], Verdict]:
    """A verdict naming the first failed step that has a ``problem``, in ``priority`` order.

    ``priority`` lists commands to look at first (the acquirer host before the card reader:
    without the host no card works); the other steps follow in playbook order.
    """
    by_command = {step.command: step for step in steps}
    order = [*priority, *(s.command for s in steps if s.command not in priority)]

    def verdict(outcomes: Mapping[str, StepOutcome]) -> Verdict:
        for command in order:
            step = by_command[command]
            outcome = outcomes.get(command)
            if step.problem and outcome is not None and not outcome.passed:
                return Verdict(step.problem, step.remedy)
        return Verdict(healthy, healthy_remedy, healthy=True)

    return verdict


def _playbook(
    name: str,
    title: str,
    steps: tuple[PlaybookStep, ...],
    healthy: str,
    healthy_remedy: tuple[str, ...] = (),
    *,
    priority: Sequence[str] = (),
) -> Playbook:
    verdict = first_failure_verdict(steps, healthy, healthy_remedy, priority=priority)
    return Playbook(name, title, steps, verdict)


_CARD_PAYMENTS_STEPS = (
    PlaybookStep("read_health", "read the terminal's health"),
    PlaybookStep(
        "card_reader_test",
        "test the card reader",
        problem="The card reader fails its self-test: cards cannot be read.",
        remedy=(
            "Clean the chip and magstripe reader with a cleaning card",
            "If the reader still fails, swap the terminal",
        ),
    ),
    PlaybookStep(
        "host_ping",
        "ping the acquirer host",
        problem=(
            "The terminal cannot reach the acquirer host: card payments fail at authorisation."
        ),
        remedy=(
            "Check that the router is on and the network cable is plugged in",
            "Restart the router, then the terminal",
            "Switch to Ethernet or 4G if the terminal has them",
        ),
    ),
)

_PRINTER_STEPS = (
    PlaybookStep(
        "print_test",
        "print a test page",
        problem="The printer cannot print a test page.",
        remedy=(
            "Reload the paper roll and close the cover",
            "Power the terminal off for 10 seconds, then print again",
        ),
    ),
)

_CLOCK_STEPS = (
    PlaybookStep(
        "sync_clock",
        "set the clock from network time",
        problem="The terminal refused to set its clock.",
        remedy=("Restart the terminal and try again",),
    ),
)

_SELF_TEST_STEPS = (
    PlaybookStep(
        "self_test",
        "run every self-test",
        timeout_s=60.0,
        problem="A self-test failed; see the step's finding.",
        remedy=("Restart the terminal; if the self-test still fails, swap it",),
    ),
)

BUILTIN_PLAYBOOKS: dict[str, Playbook] = {
    playbook.name: playbook
    for playbook in (
        _playbook(
            "card_payments_failing",
            "Card payments failing",
            _CARD_PAYMENTS_STEPS,
            "Card reader and acquirer host both pass: the terminal is healthy; the problem is"
            " probably the card or the issuer.",
            ("Ask the cardholder to try another card or contactless",),
            priority=("host_ping",),
        ),
        _playbook(
            "printer_check",
            "Printer check",
            _PRINTER_STEPS,
            "The test page printed: the printer works.",
        ),
        _playbook(
            "clock_resync",
            "Resynchronise the clock",
            _CLOCK_STEPS,
            "The clock is synchronised.",
        ),
        _playbook("self_test", "Full self-test", _SELF_TEST_STEPS, "Every self-test passed."),
    )
}

COMPONENT_PLAYBOOKS: dict[str, str] = {
    "printer": "printer_check",
    "card_reader": "card_payments_failing",
    "network": "card_payments_failing",
    "clock": "clock_resync",
}
"""The playbook for an incident whose rule names none, by the rule's component."""

FALLBACK_PLAYBOOK = "self_test"


def default_playbook(
    component: str,
    declared: str | None = None,
    playbooks: Mapping[str, Playbook] = BUILTIN_PLAYBOOKS,
) -> str | None:
    """The playbook that matches a rule: the one it names, else its component's one.

    None only when ``playbooks`` has none of them (a deployment without the built-ins).
    """
    for name in (declared, COMPONENT_PLAYBOOKS.get(component), FALLBACK_PLAYBOOK):
        if name is not None and name in playbooks:
            return name
    return None
