"""An incident's life as pure code: which step each state allows, what a step changes,
which notification it sends, and when a condition that comes back reopens the incident
it had (flapping) instead of opening another.

No I/O here. :mod:`posfleet.diagnostics.incident_recorder` (the engine's findings) and
:mod:`posfleet.diagnostics.incident_actions` (staff) read the incident, ask this module
what to do, and write the answer with :func:`posfleet.store.incidents.update_incident`
guarded by the states the step is allowed from: a step decided on a stale read is
refused by the database instead of overwriting what happened meanwhile.

A decision is a :class:`Transition` (the columns to write, the counters to add to, the
notification to send) or a :class:`Refusal` that says why not, in words staff read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, TypeAlias

from posfleet.diagnostics.rule_model import Escalation
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    IncidentState,
    OpenOutcome,
)

CONDITION_CLEARED = "condition cleared"
"""The resolution of an incident whose rule's condition cleared by itself."""
GROUP_RECOVERED = "every terminal recovered"
"""The resolution of a fleet incident whose last terminal recovered."""


class Step(StrEnum):
    """What can happen to an incident once it exists."""

    ACKNOWLEDGE = "acknowledge"
    ASSIGN = "assign"
    ESCALATE = "escalate"
    RESOLVE = "resolve"
    REOPEN = "reopen"
    TAKE_OVER = "take_over"
    """A rule takes over the incident of a reported fault that came before its inputs."""


@dataclass(frozen=True, slots=True)
class StepRule:
    """Where a step may start, where it leads, and what staff read when it may not."""

    allowed_from: frozenset[IncidentState]
    leads_to: IncidentState | None
    """None: the state stays as it is."""
    refusal: str = ""
    """Why not, with ``{id}`` and ``{state}`` for the incident's."""


_UNRESOLVED = frozenset({IncidentState.OPEN, IncidentState.ACKNOWLEDGED})

STEPS: Mapping[Step, StepRule] = {
    Step.ACKNOWLEDGE: StepRule(
        frozenset({IncidentState.OPEN}),
        IncidentState.ACKNOWLEDGED,
        "incident #{id} is {state}; only an open one can be acknowledged",
    ),
    # Assignment is bookkeeping: who looks after it, even after it was resolved.
    Step.ASSIGN: StepRule(frozenset(IncidentState), None),
    Step.ESCALATE: StepRule(_UNRESOLVED, None, "incident #{id} is {state}"),
    Step.RESOLVE: StepRule(
        _UNRESOLVED, IncidentState.RESOLVED, "incident #{id} is already {state}"
    ),
    Step.REOPEN: StepRule(
        frozenset({IncidentState.RESOLVED}),
        IncidentState.OPEN,
        "incident #{id} is {state}; only a resolved incident can reopen",
    ),
    Step.TAKE_OVER: StepRule(
        _UNRESOLVED,
        None,
        "incident #{id} is {state}; a rule takes over only an unresolved reported fault",
    ),
}
"""Every step's rule: together, ``open -> acknowledged -> resolved``, and back to open."""


def allows(step: Step, state: IncidentState) -> bool:
    """Whether an incident in ``state`` may take ``step``."""
    return state in STEPS[step].allowed_from


def next_states(state: IncidentState) -> frozenset[IncidentState]:
    """The states an incident in ``state`` may move to."""
    return frozenset(
        rule.leads_to
        for rule in STEPS.values()
        if state in rule.allowed_from and rule.leads_to not in (None, state)
    )


@dataclass(frozen=True, slots=True)
class Transition:
    """A step to write: ``changes`` (column values) and ``increments`` (counters to add
    to) on ``incident_id``, provided it is still in one of ``allowed_from``."""

    step: Step
    incident_id: int
    allowed_from: frozenset[IncidentState]
    changes: Mapping[str, Any]
    increments: Mapping[str, int] = field(default_factory=dict)
    notify: NotificationEvent | None = None
    """The notification to send once written; None: nobody is told."""

    @property
    def leads_to(self) -> IncidentState | None:
        """The incident's state after the step (None: unchanged)."""
        return STEPS[self.step].leads_to


@dataclass(frozen=True, slots=True)
class Refusal:
    """A step that may not be taken, and why."""

    reason: str


Decision: TypeAlias = Transition | Refusal


def _step(
    step: Step,
    incident: IncidentRecord,
    changes: Mapping[str, Any],
    *,
    increments: Mapping[str, int] | None = None,
    notify: NotificationEvent | None = None,
) -> Decision:
    rule = STEPS[step]
    if incident.state not in rule.allowed_from:
        return Refusal(rule.refusal.format(id=incident.id, state=incident.state.value))
    values = dict(changes)
    if rule.leads_to is not None:
        values["state"] = rule.leads_to.value
    return Transition(step, incident.id, rule.allowed_from, values, dict(increments or {}), notify)


# -- the condition holds: repeat, reopen or open ----------------------------------------


@dataclass(frozen=True, slots=True)
class Repeat:
    """An unresolved incident holds the key: one more occurrence, nobody is told."""

    incident_id: int


@dataclass(frozen=True, slots=True)
class OpenNew:
    """Nothing to continue: a new incident for ``spec``."""

    spec: IncidentSpec


Opening: TypeAlias = Repeat | Transition | OpenNew
"""What a condition that holds does; a :class:`Transition` here is a reopen."""


def within_flap_window(previous: IncidentRecord, *, now: datetime, flap_window: timedelta) -> bool:
    """Whether ``previous`` resolved recently enough (at most ``flap_window`` before
    ``now``) that its condition coming back is the same problem, flapping."""
    if flap_window <= timedelta(0) or previous.resolved_at is None:
        return False
    return previous.resolved_at >= now - flap_window


def condition_holds(
    spec: IncidentSpec,
    *,
    holder: IncidentRecord | None,
    previous: IncidentRecord | None,
    now: datetime,
    flap_window: timedelta,
) -> Opening:
    """What to do when ``spec``'s condition holds.

    ``holder`` is the unresolved incident holding ``spec``'s key, if any; ``previous``
    the one of the same terminal (or group) and rule that resolved last. A holder
    repeats; a previous incident resolved within ``flap_window`` reopens; otherwise a
    new incident opens.
    """
    if holder is not None:
        return Repeat(holder.id)
    if previous is not None and within_flap_window(previous, now=now, flap_window=flap_window):
        reopened = reopen(previous, spec, now=now)
        if isinstance(reopened, Transition):
            return reopened
    return OpenNew(spec)


def reopen(previous: IncidentRecord, spec: IncidentSpec, *, now: datetime) -> Decision:
    """The resolved ``previous`` opens again for ``spec``: the same number, a reopen more,
    and its acknowledgement gone (someone has to take it again)."""
    changes = {
        "open_key": spec.open_key,
        "resolved_at": None,
        "resolved_by": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "last_seen_at": now,
        "updated_at": now,
        "facts": spec.facts,
    }
    increments = {"reopen_count": 1, "occurrences": 1}
    return _step(Step.REOPEN, previous, changes, increments=increments)


def opening_notice(incident: IncidentRecord, outcome: OpenOutcome) -> NotificationEvent | None:
    """What to tell once ``incident`` opened (or reopened, or repeated) as ``outcome`` says.

    A fleet incident that (re)opens is an escalation; a terminal's, an opening, unless it
    belongs to a fleet incident (which speaks for it). A repeat is news to nobody.
    """
    if outcome is OpenOutcome.ALREADY_OPEN:
        return None
    if incident.kind is IncidentKind.FLEET:
        return NotificationEvent.ESCALATED
    return NotificationEvent.OPENED if incident.parent_id is None else None


def take_over(
    reported: IncidentRecord | None,
    spec: IncidentSpec,
    *,
    holder: IncidentRecord | None,
    now: datetime,
) -> Decision:
    """A rule takes over ``reported``, the incident of a fault that came before the
    rule's inputs: it keeps its number, acknowledgement, notes and assignee, and gets
    the rule's key, texts and the facts of both. Refused when there is no such incident
    or ``holder`` (the unresolved incident holding the rule's key) exists already."""
    if reported is None:
        return Refusal(f"no unresolved reported fault for {spec.rule_id} to take over")
    if holder is not None:
        return Refusal(f"incident #{holder.id} already holds {spec.open_key}")
    # What the terminal is may have come in meanwhile (inventory rides the bulk lane).
    identity = {
        "model": spec.model,
        "firmware_version": spec.firmware_version,
        "site_id": spec.site_id,
        "merchant_id": spec.merchant_id,
    }
    changes = {
        "open_key": spec.open_key,
        "rule_id": spec.rule_id,
        "title": spec.title,
        "component": spec.component,
        "severity": spec.severity,
        "escalation": spec.escalation,
        "cause": spec.cause,
        "remedy": list(spec.remedy),
        "facts": {**reported.facts, **spec.facts, "reported_as": reported.rule_id},
        "last_seen_at": now,
        "updated_at": now,
        **{name: value for name, value in identity.items() if value is not None},
    }
    return _step(Step.TAKE_OVER, reported, changes)


# -- resolving: by its rule, with its group, or by staff ---------------------------------


def _resolve(
    incident: IncidentRecord,
    *,
    by: str | None,
    resolution: str,
    now: datetime,
    notify: NotificationEvent | None,
) -> Decision:
    changes = {
        "open_key": None,
        "resolved_at": now,
        "resolved_by": by,
        "resolution": resolution,
        "updated_at": now,
    }
    return _step(Step.RESOLVE, incident, changes, notify=notify)


def resolve_by_staff(
    incident: IncidentRecord, *, by: str, resolution: str, now: datetime
) -> Decision:
    """Staff close the incident, saying how it was fixed."""
    return _resolve(
        incident, by=by, resolution=resolution, now=now, notify=NotificationEvent.RESOLVED
    )


def condition_cleared(incident: IncidentRecord, *, now: datetime) -> Decision:
    """Its rule's condition cleared: resolved by itself. A fleet incident's terminal
    tells nobody; its fleet incident does, once the last one recovered."""
    notify = NotificationEvent.RESOLVED if incident.parent_id is None else None
    return _resolve(incident, by=None, resolution=CONDITION_CLEARED, now=now, notify=notify)


def group_recovered(parent: IncidentRecord, *, unresolved_children: int, now: datetime) -> Decision:
    """A fleet incident resolves when its last terminal does."""
    if unresolved_children:
        return Refusal(f"incident #{parent.id} has {unresolved_children} terminals still affected")
    return _resolve(
        parent, by=None, resolution=GROUP_RECOVERED, now=now, notify=NotificationEvent.RESOLVED
    )


def group_merged(
    parent: IncidentRecord, *, unresolved_children: int, into: int, now: datetime
) -> Decision:
    """A fleet incident whose terminals all moved to the wider fleet incident ``into``
    (a site's outage turning out to be the acquirer's) closes into it, silently: the
    wider one is what staff were told about."""
    if unresolved_children:
        return Refusal(f"incident #{parent.id} has {unresolved_children} terminals still affected")
    return _resolve(
        parent, by=None, resolution=f"merged into incident #{into}", now=now, notify=None
    )


# -- staff actions ------------------------------------------------------------------------


def acknowledge(incident: IncidentRecord, *, by: str, now: datetime) -> Decision:
    """Someone takes the incident: open -> acknowledged."""
    changes = {"acknowledged_at": now, "acknowledged_by": by, "updated_at": now}
    return _step(Step.ACKNOWLEDGE, incident, changes)


def assign(incident: IncidentRecord, *, assignee: str | None, now: datetime) -> Decision:
    """Give the incident to a staff member (None: nobody), in any state."""
    return _step(Step.ASSIGN, incident, {"assignee": assignee, "updated_at": now})


def escalate(incident: IncidentRecord, *, to: Escalation, now: datetime) -> Decision:
    """Send the problem on (an on-site visit, a swap, or back to a remote fix)."""
    changes = {"escalated_to": to.value, "updated_at": now}
    return _step(Step.ESCALATE, incident, changes, notify=NotificationEvent.ESCALATED)


def note_text(text: str) -> str | Refusal:
    """The text a note keeps (notes are welcome in every state), or why there is none."""
    kept = text.strip()
    return kept if kept else Refusal("a note needs some text")
