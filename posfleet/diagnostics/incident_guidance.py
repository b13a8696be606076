"""What support should do about an incident: who fixes it and where, and which playbook.

Pure: :func:`guidance_for` reads the incident and the rule it came from (when that rule is
still in force). A terminal incident is fixed where its rule's ``fixed_by`` says; a fleet
incident where its shared cause is (a site's network on site, the acquirer remotely).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from posfleet.diagnostics.fleet_correlation import FIXED_BY_GROUP
from posfleet.diagnostics.playbooks import BUILTIN_PLAYBOOKS, Playbook, default_playbook
from posfleet.diagnostics.rule_model import CorrelateBy, Escalation, FixLocation, Rule
from posfleet.store.incidents import IncidentKind, IncidentRecord

_FIXED_BY_ESCALATION = {
    Escalation.REMOTE_FIX: FixLocation.REMOTE,
    Escalation.ON_SITE: FixLocation.TECHNICIAN,
    # A swap is the merchant's to do: the steps first, then the replacement that is sent.
    Escalation.SWAP: FixLocation.MERCHANT,
}
"""Where a rule that does not say ``fixed_by`` is fixed, from its escalation."""

_SAME_KIND = {
    Escalation.REMOTE_FIX: FixLocation.REMOTE,
    Escalation.ON_SITE: FixLocation.TECHNICIAN,
}


@dataclass(frozen=True)
class Guidance:
    """Who carries out the remedy, and where; what comes next; the playbook to run."""

    fixed_by: FixLocation
    next_step: Escalation | None
    """Support's next step when the remedy does not help; None when it adds nothing."""
    playbook: str | None
    """The playbook that matches the rule; None when no playbook is known at all."""


def _escalation(value: str) -> Escalation | None:
    try:
        return Escalation(value)
    except ValueError:
        return None


def _group_fixed_by(record: IncidentRecord) -> FixLocation | None:
    if record.kind is not IncidentKind.FLEET:
        return None
    try:
        return FIXED_BY_GROUP[CorrelateBy(str(record.facts.get("correlated_by")))]
    except ValueError:
        return None


def guidance_for(
    record: IncidentRecord,
    rule: Rule | None,
    playbooks: Mapping[str, Playbook] = BUILTIN_PLAYBOOKS,
) -> Guidance:
    """The guidance for ``record``; ``rule`` is the rule in force under its rule id, if any."""
    escalation = _escalation(record.escalation)
    fixed_by = _group_fixed_by(record) or (rule.fixed_by if rule is not None else None)
    if fixed_by is None:
        fixed_by = _FIXED_BY_ESCALATION[escalation] if escalation else FixLocation.REMOTE
    next_step = None if escalation is None or _SAME_KIND.get(escalation) is fixed_by else escalation
    declared = rule.playbook if rule is not None else None
    return Guidance(fixed_by, next_step, default_playbook(record.component, declared, playbooks))
