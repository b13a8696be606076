"""Who fixes an incident, which playbook matches it, and what a playbook step found."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.incident_guidance import guidance_for
from posfleet.diagnostics.playbooks import (
    BUILTIN_PLAYBOOKS,
    StepOutcome,
    default_playbook,
    step_finding,
)
from posfleet.diagnostics.rule_files import load_builtin_rules, parse_rules
from posfleet.diagnostics.rule_model import Escalation, FixLocation, Rule
from posfleet.store.incidents import IncidentKind, IncidentRecord, IncidentState

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
RULES = {rule.id: rule for rule in load_builtin_rules()}


def _incident(rule_id: str, **changes: Any) -> IncidentRecord:
    rule = RULES.get(rule_id)
    fields: dict[str, Any] = {
        "id": 1,
        "kind": IncidentKind.TERMINAL,
        "terminal_id": "T-1",
        "rule_id": rule_id,
        "state": IncidentState.OPEN,
        "title": "t",
        "component": rule.component.value if rule else "system",
        "severity": "error",
        "escalation": rule.escalation.value if rule else "remote_fix",
        "cause": "c",
        "remedy": [],
        "facts": {},
        "parent_id": None,
        "correlation": None,
        "model": None,
        "firmware_version": None,
        "site_id": None,
        "merchant_id": None,
        "opened_at": T0,
        "last_seen_at": T0,
        "acknowledged_at": None,
        "resolved_at": None,
        "updated_at": T0,
        "occurrences": 1,
        "reopen_count": 0,
        "assignee": None,
        "acknowledged_by": None,
        "resolved_by": None,
        "resolution": "",
        "escalated_to": None,
    }
    return IncidentRecord.model_validate(fields | changes)


def test_every_builtin_rule_says_who_fixes_it_and_names_a_known_playbook() -> None:
    assert [rule.id for rule in RULES.values() if rule.fixed_by is None] == []
    named = {rule.playbook for rule in RULES.values() if rule.playbook}
    assert named <= set(BUILTIN_PLAYBOOKS)


@pytest.mark.parametrize(
    ("rule_id", "fixed_by", "next_step", "playbook"),
    [
        # The router is the merchant's: remote support cannot plug a cable back in.
        ("network.host_unreachable", FixLocation.MERCHANT, Escalation.REMOTE_FIX, None),
        ("printer.not_ready", FixLocation.MERCHANT, Escalation.REMOTE_FIX, "printer_check"),
        ("clock.drift", FixLocation.REMOTE, None, "clock_resync"),
        ("maintenance.print_head", FixLocation.TECHNICIAN, None, "printer_check"),
        ("tamper.detected", FixLocation.MERCHANT, Escalation.SWAP, "self_test"),
    ],
)
def test_a_terminal_incident_follows_its_rule(
    rule_id: str, fixed_by: FixLocation, next_step: Escalation | None, playbook: str | None
) -> None:
    guidance = guidance_for(_incident(rule_id), RULES[rule_id])
    assert guidance.fixed_by is fixed_by
    assert guidance.next_step is next_step
    assert guidance.playbook == (playbook or RULES[rule_id].playbook)


@pytest.mark.parametrize(
    ("correlated_by", "fixed_by"),
    [
        ("site", FixLocation.MERCHANT),
        ("merchant", FixLocation.MERCHANT),
        ("acquirer", FixLocation.REMOTE),
        ("firmware", FixLocation.REMOTE),
    ],
)
def test_a_fleet_incident_is_fixed_where_its_shared_cause_is(
    correlated_by: str, fixed_by: FixLocation
) -> None:
    record = _incident(
        "network.host_unreachable",
        kind=IncidentKind.FLEET,
        terminal_id=None,
        facts={"correlated_by": correlated_by, "value": "x"},
    )
    guidance = guidance_for(record, RULES["network.host_unreachable"])
    assert guidance.fixed_by is fixed_by
    assert guidance.playbook == "card_payments_failing"


def test_without_its_rule_the_incident_is_guided_by_escalation_and_component() -> None:
    reported = _incident("reported.printer.fault", component="printer", escalation="on_site")
    guidance = guidance_for(reported, None)
    assert guidance.fixed_by is FixLocation.TECHNICIAN
    assert guidance.next_step is None
    assert guidance.playbook == "printer_check"
    odd = guidance_for(_incident("x.y", escalation="nonsense", component="storage"), None)
    assert odd.fixed_by is FixLocation.REMOTE and odd.next_step is None
    assert odd.playbook == "self_test"


def test_default_playbook_prefers_the_rules_own_then_its_components() -> None:
    assert default_playbook("printer", "self_test") == "self_test"
    assert default_playbook("printer", "no_such_playbook") == "printer_check"
    assert default_playbook("battery") == "self_test"
    assert default_playbook("battery", playbooks={}) is None


def test_fixed_by_in_a_rule_file_must_be_a_known_place() -> None:
    text = """rules:
  - id: custom.thing
    title: Thing
    component: system
    severity: warning
    when: memory_used_pct > 99.0
    cause: c
    remedy: [r]
    escalation: remote_fix
    fixed_by: the_moon
"""
    with pytest.raises(RuleFileError, match=r"custom.yaml:10: fixed_by 'the_moon' is not one of"):
        parse_rules(text, "custom.yaml")
    [rule] = parse_rules(text.replace("the_moon", "technician"))
    assert isinstance(rule, Rule) and rule.fixed_by is FixLocation.TECHNICIAN


_PRINTER_FAILED = {
    "passed": False,
    "detail": "printer no_paper",
    "checks": [
        {"name": "printer", "passed": False, "detail": "printer no_paper, 0 lines left"},
        {"name": "test_line", "passed": False, "detail": "not printed"},
        {"name": "cover", "passed": True, "detail": "closed"},
    ],
}


_FINDINGS = [
    (
        StepOutcome("print_test", "failed", _PRINTER_FAILED),
        "printer no_paper, 0 lines left; not printed",
    ),
    (
        StepOutcome("host_ping", "ok", {"passed": True, "detail": "acquirer host answered"}),
        "acquirer host answered",
    ),
    (
        StepOutcome("sync_clock", "ok", {"previous_offset_s": -93.25}),
        "the clock was -93.2 s off; it is now set from network time",
    ),
    (StepOutcome("read_health", "ok", {"battery": {}, "printer": {}}), "health read: 2 values"),
    (StepOutcome("print_test", "timed_out"), "no answer from the terminal"),
    (
        StepOutcome("print_test", "rejected", error="busy"),
        "the terminal rejected the command: busy",
    ),
    (StepOutcome("reboot", "failed", error="driver gone"), "driver gone"),
]


@pytest.mark.parametrize(("outcome", "finding"), _FINDINGS)
def test_step_finding_says_what_the_step_saw(outcome: StepOutcome, finding: str) -> None:
    assert step_finding(outcome) == finding


def test_card_payments_blames_the_host_before_the_reader() -> None:
    playbook = BUILTIN_PLAYBOOKS["card_payments_failing"]
    both_broken = {
        "read_health": StepOutcome("read_health", "ok"),
        "card_reader_test": StepOutcome("card_reader_test", "failed", {"passed": False}),
        "host_ping": StepOutcome("host_ping", "failed", {"passed": False}),
    }
    verdict = playbook.verdict(both_broken)
    assert "acquirer host" in verdict.summary and not verdict.healthy
    assert verdict.remedy[0].startswith("Check that the router is on")
    healthy = {name: StepOutcome(name, "ok", {"passed": True}) for name in both_broken}
    assert playbook.verdict(healthy).healthy
