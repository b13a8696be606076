"""The staff action forms of an incident page: acknowledge, run a playbook, assign,
escalate, add a note, resolve.

Every form is a POST carrying the CSRF token; the page shows them only to a role that
may act (support and above), and the handlers check the role again. This module decides
which forms the page offers and what they offer to choose from;
``incident_actions.html`` draws them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from posfleet.dashboard.templating import _
from posfleet.diagnostics.incident_lifecycle import Step, allows
from posfleet.diagnostics.playbook_targets import ALL_TARGETS
from posfleet.diagnostics.rule_model import Escalation
from posfleet.store.incidents import IncidentKind, IncidentRecord

MAX_TEXT = 4000


@dataclass(frozen=True)
class ActionOptions:
    """Which action forms the detail page offers, and what they offer to choose from."""

    can_act: bool
    playbooks: Sequence[tuple[str, str]] = ()
    """(name, title) of the playbooks that can run; empty when no broker is configured."""
    default_playbook: str | None = None
    """The playbook that matches the incident's rule: selected, and listed first."""
    staff: Sequence[str] = ()
    """User names the incident can be assigned to."""
    targets: Sequence[str] = ()
    """A fleet incident's terminals a playbook can run on."""


@dataclass(frozen=True)
class Choice:
    """One ``<option>`` of a form's menu."""

    value: str
    label: str
    selected: bool = False


@dataclass(frozen=True)
class ActionForms:
    """The forms of the Actions section; a menu left empty means that form is not offered."""

    base: str
    """The incident's path; each form posts to a path under it."""
    can_acknowledge: bool
    unresolved: bool
    playbooks: list[Choice]
    targets: list[Choice]
    """A fleet incident's "all terminals or one" menu; empty for a terminal's incident."""
    assignees: list[Choice]
    escalations: list[Choice]
    max_text: int = MAX_TEXT


def _playbooks(record: IncidentRecord, options: ActionOptions) -> list[Choice]:
    runnable = record.terminal_id is not None or bool(options.targets)
    if not runnable:
        return []
    chosen = options.default_playbook
    ordered = sorted(options.playbooks, key=lambda item: item[0] != chosen)
    return [
        Choice(
            name,
            _("%(title)s (suggested)") % {"title": title} if name == chosen else title,
            name == chosen,
        )
        for name, title in ordered
    ]


def _targets(record: IncidentRecord, options: ActionOptions) -> list[Choice]:
    if record.kind is not IncidentKind.FLEET:
        return []
    count = len(options.targets)
    everyone = (
        _("the affected terminal")
        if count == 1
        else _("all %(count)s affected terminals") % {"count": count}
    )
    return [
        Choice(ALL_TARGETS, everyone, True),
        *(Choice(terminal, terminal) for terminal in options.targets),
    ]


def _assignees(record: IncidentRecord, options: ActionOptions) -> list[Choice]:
    names = list(options.staff)
    if record.assignee and record.assignee not in names:
        names.insert(0, record.assignee)
    return [
        Choice("", _("nobody"), record.assignee is None),
        *(Choice(name, name, name == record.assignee) for name in names),
    ]


def _escalations(record: IncidentRecord) -> list[Choice]:
    current = record.escalated_to or record.escalation
    labels = (
        (Escalation.ON_SITE, _("a technician visit")),
        (Escalation.SWAP, _("a terminal swap")),
        (Escalation.REMOTE_FIX, _("a remote fix")),
    )
    return [Choice(to.value, label, to.value == current) for to, label in labels]


def action_forms(record: IncidentRecord, base: str, options: ActionOptions) -> ActionForms | None:
    """The Actions section's forms, or None for a role that may only read."""
    if not options.can_act:
        return None
    return ActionForms(
        base=base,
        can_acknowledge=allows(Step.ACKNOWLEDGE, record.state),
        unresolved=allows(Step.RESOLVE, record.state),
        playbooks=_playbooks(record, options),
        targets=_targets(record, options),
        assignees=_assignees(record, options),
        escalations=_escalations(record),
    )
