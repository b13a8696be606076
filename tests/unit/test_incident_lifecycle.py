"""An incident's life without a database: the transition table, flapping, refusals,
take-over, resolving by rule or by staff, and who is told."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from posfleet.diagnostics.incident_lifecycle import (
    CONDITION_CLEARED,
    GROUP_RECOVERED,
    STEPS,
    Decision,
    OpenNew,
    Refusal,
    Repeat,
    Step,
    Transition,
    acknowledge,
    allows,
    assign,
    condition_cleared,
    condition_holds,
    escalate,
    group_merged,
    group_recovered,
    next_states,
    note_text,
    opening_notice,
    reopen,
    resolve_by_staff,
    take_over,
    within_flap_window,
)
from posfleet.diagnostics.rule_model import Escalation
from posfleet.diagnostics.webhooks import NotificationEvent
from posfleet.store.incidents import (
    IncidentKind,
    IncidentRecord,
    IncidentSpec,
    IncidentState,
    OpenOutcome,
)

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=20)
WINDOW = timedelta(minutes=15)

OPEN, ACKNOWLEDGED, RESOLVED = (
    IncidentState.OPEN,
    IncidentState.ACKNOWLEDGED,
    IncidentState.RESOLVED,
)


def _incident(state: IncidentState = OPEN, **changes: Any) -> IncidentRecord:
    fields: dict[str, Any] = {
        "id": 7,
        "kind": IncidentKind.TERMINAL,
        "terminal_id": "T-1",
        "rule_id": "printer.not_ready",
        "state": state,
        "title": "Printer cannot print",
        "component": "printer",
        "severity": "error",
        "escalation": "remote_fix",
        "cause": "paper",
        "remedy": ["reload the roll"],
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
        "resolved_at": T0 if state is RESOLVED else None,
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


def _spec(rule_id: str = "printer.not_ready", **changes: Any) -> IncidentSpec:
    fields: dict[str, Any] = {
        "rule_id": rule_id,
        "title": "Printer cannot print",
        "component": "printer",
        "severity": "error",
        "escalation": "remote_fix",
        "cause": "paper",
        "remedy": ["reload the roll"],
        "terminal_id": "T-1",
        "facts": {"status": "no_paper"},
    }
    return IncidentSpec(**(fields | changes))


STAFF_STEPS: dict[Step, Callable[[IncidentRecord], Decision]] = {
    Step.ACKNOWLEDGE: lambda i: acknowledge(i, by="alice", now=LATER),
    Step.ASSIGN: lambda i: assign(i, assignee="bob", now=LATER),
    Step.ESCALATE: lambda i: escalate(i, to=Escalation.ON_SITE, now=LATER),
    Step.RESOLVE: lambda i: resolve_by_staff(i, by="alice", resolution="new roll", now=LATER),
    Step.REOPEN: lambda i: reopen(i, _spec(), now=LATER),
    Step.TAKE_OVER: lambda i: take_over(i, _spec("network.x"), holder=None, now=LATER),
}

# (step, from, allowed, state after)
TABLE = [
    (Step.ACKNOWLEDGE, OPEN, True, ACKNOWLEDGED),
    (Step.ACKNOWLEDGE, ACKNOWLEDGED, False, None),
    (Step.ACKNOWLEDGE, RESOLVED, False, None),
    (Step.ASSIGN, OPEN, True, OPEN),
    (Step.ASSIGN, ACKNOWLEDGED, True, ACKNOWLEDGED),
    (Step.ASSIGN, RESOLVED, True, RESOLVED),
    (Step.ESCALATE, OPEN, True, OPEN),
    (Step.ESCALATE, ACKNOWLEDGED, True, ACKNOWLEDGED),
    (Step.ESCALATE, RESOLVED, False, None),
    (Step.RESOLVE, OPEN, True, RESOLVED),
    (Step.RESOLVE, ACKNOWLEDGED, True, RESOLVED),
    (Step.RESOLVE, RESOLVED, False, None),
    (Step.REOPEN, OPEN, False, None),
    (Step.REOPEN, ACKNOWLEDGED, False, None),
    (Step.REOPEN, RESOLVED, True, OPEN),
    (Step.TAKE_OVER, OPEN, True, OPEN),
    (Step.TAKE_OVER, ACKNOWLEDGED, True, ACKNOWLEDGED),
    (Step.TAKE_OVER, RESOLVED, False, None),
]


def test_the_table_covers_every_step_from_every_state() -> None:
    assert {(step, start) for step, start, _, _ in TABLE} == {
        (step, state) for step in Step for state in IncidentState
    }
    assert set(STAFF_STEPS) == set(Step)


@pytest.mark.parametrize(("step", "start", "allowed", "after"), TABLE)
def test_every_step_is_taken_or_refused_by_the_table(
    step: Step, start: IncidentState, allowed: bool, after: IncidentState | None
) -> None:
    decision = STAFF_STEPS[step](_incident(start))
    assert allows(step, start) is allowed
    if not allowed:
        assert isinstance(decision, Refusal)
        return
    assert isinstance(decision, Transition)
    assert (decision.step, decision.incident_id) == (step, 7)
    assert decision.allowed_from == STEPS[step].allowed_from, "the write is guarded by it"
    assert decision.changes.get("state", start.value) == after
    assert decision.changes["updated_at"] == LATER


def test_open_acknowledged_resolved_and_back_to_open() -> None:
    assert next_states(OPEN) == {ACKNOWLEDGED, RESOLVED}
    assert next_states(ACKNOWLEDGED) == {RESOLVED}
    assert next_states(RESOLVED) == {OPEN}


ONLY_OPEN = "only an open one can be acknowledged"


@pytest.mark.parametrize(
    ("step", "start", "reason"),
    [
        (Step.ACKNOWLEDGE, ACKNOWLEDGED, f"incident #7 is acknowledged; {ONLY_OPEN}"),
        (Step.ACKNOWLEDGE, RESOLVED, f"incident #7 is resolved; {ONLY_OPEN}"),
        (Step.RESOLVE, RESOLVED, "incident #7 is already resolved"),
        (Step.ESCALATE, RESOLVED, "incident #7 is resolved"),
        (Step.REOPEN, OPEN, "incident #7 is open; only a resolved incident can reopen"),
        (
            Step.TAKE_OVER,
            RESOLVED,
            "incident #7 is resolved; a rule takes over only an unresolved reported fault",
        ),
    ],
)
def test_a_refusal_says_why_in_words_staff_read(
    step: Step, start: IncidentState, reason: str
) -> None:
    assert STAFF_STEPS[step](_incident(start)) == Refusal(reason)


def test_a_note_needs_text_and_keeps_it_trimmed() -> None:
    assert note_text("  called the merchant \n") == "called the merchant"
    assert note_text(" \n\t") == Refusal("a note needs some text")


# -- the condition holds: repeat, reopen (flapping) or open --------------------------------


@pytest.mark.parametrize(
    ("resolved_ago", "window", "flapping"),
    [
        (timedelta(minutes=5), WINDOW, True),
        (WINDOW, WINDOW, True),  # the edge itself still counts
        (WINDOW + timedelta(microseconds=1), WINDOW, False),
        (timedelta(hours=1), WINDOW, False),
        (-timedelta(seconds=30), WINDOW, True),  # resolved by a finding timed after this one
        (timedelta(0), timedelta(0), False),  # no window: never the same incident
        (timedelta(0), -WINDOW, False),
    ],
)
def test_the_flap_window_and_its_edges(
    resolved_ago: timedelta, window: timedelta, flapping: bool
) -> None:
    previous = _incident(RESOLVED, resolved_at=LATER - resolved_ago)
    assert within_flap_window(previous, now=LATER, flap_window=window) is flapping
    decision = condition_holds(
        _spec(), holder=None, previous=previous, now=LATER, flap_window=window
    )
    assert isinstance(decision, Transition if flapping else OpenNew)


def test_an_unresolved_incident_holding_the_key_repeats() -> None:
    holder = _incident(ACKNOWLEDGED)
    previous = _incident(RESOLVED, id=3, resolved_at=LATER)
    decision = condition_holds(
        _spec(), holder=holder, previous=previous, now=LATER, flap_window=WINDOW
    )
    assert decision == Repeat(7)


def test_nothing_to_continue_opens_a_new_incident() -> None:
    spec = _spec()
    assert condition_holds(
        spec, holder=None, previous=None, now=LATER, flap_window=WINDOW
    ) == OpenNew(spec)


def test_a_reopen_is_the_same_number_taken_again_by_nobody() -> None:
    previous = _incident(
        RESOLVED,
        resolved_at=LATER - timedelta(minutes=5),
        resolved_by="bob",
        acknowledged_at=T0,
        acknowledged_by="alice",
        assignee="bob",
        reopen_count=2,
    )
    decision = condition_holds(
        _spec(), holder=None, previous=previous, now=LATER, flap_window=WINDOW
    )
    assert isinstance(decision, Transition) and decision.step is Step.REOPEN
    assert decision.allowed_from == {RESOLVED}
    assert decision.changes == {
        "state": "open",
        "open_key": "T-1/printer.not_ready",
        "resolved_at": None,
        "resolved_by": None,
        "acknowledged_at": None,
        "acknowledged_by": None,
        "last_seen_at": LATER,
        "updated_at": LATER,
        "facts": {"status": "no_paper"},
    }
    # Counted by the database, so a concurrent writer's count is not lost.
    assert decision.increments == {"reopen_count": 1, "occurrences": 1}
    assert decision.notify is None, "told once the recorder knows whether it joined a fleet"


@pytest.mark.parametrize(
    ("kind", "parent_id", "outcome", "notice"),
    [
        (IncidentKind.TERMINAL, None, OpenOutcome.OPENED, NotificationEvent.OPENED),
        (IncidentKind.TERMINAL, None, OpenOutcome.REOPENED, NotificationEvent.OPENED),
        (IncidentKind.TERMINAL, None, OpenOutcome.ALREADY_OPEN, None),
        (IncidentKind.TERMINAL, 40, OpenOutcome.OPENED, None),  # its fleet incident speaks
        (IncidentKind.FLEET, None, OpenOutcome.OPENED, NotificationEvent.ESCALATED),
        (IncidentKind.FLEET, None, OpenOutcome.REOPENED, NotificationEvent.ESCALATED),
        (IncidentKind.FLEET, None, OpenOutcome.ALREADY_OPEN, None),
    ],
)
def test_who_is_told_when_an_incident_opens(
    kind: IncidentKind,
    parent_id: int | None,
    outcome: OpenOutcome,
    notice: NotificationEvent | None,
) -> None:
    incident = _incident(kind=kind, parent_id=parent_id)
    assert opening_notice(incident, outcome) is notice


# -- take-over: a reported fault becomes its rule's ---------------------------------------


def test_a_rule_takes_over_a_reported_fault_keeping_its_number_and_facts() -> None:
    reported = _incident(
        ACKNOWLEDGED,
        rule_id="reported.network.host_unreachable",
        facts={"detail": "no answer from the acquirer"},
        site_id="S-1",
    )
    spec = _spec(
        "network.host_unreachable",
        title="Acquirer host unreachable",
        component="network",
        facts={"host_reachable": False},
        model="PF-C200",
    )
    decision = take_over(reported, spec, holder=None, now=LATER)
    assert isinstance(decision, Transition) and decision.incident_id == 7
    assert "state" not in decision.changes, "acknowledged stays acknowledged"
    assert decision.changes["open_key"] == "T-1/network.host_unreachable"
    assert decision.changes["rule_id"] == "network.host_unreachable"
    assert decision.changes["title"] == "Acquirer host unreachable"
    assert decision.changes["facts"] == {
        "detail": "no answer from the acquirer",
        "host_reachable": False,
        "reported_as": "reported.network.host_unreachable",
    }
    # Identity that came in meanwhile is filled in; what is unknown is not wiped.
    assert decision.changes["model"] == "PF-C200"
    assert "site_id" not in decision.changes


def test_a_take_over_is_refused_without_a_reported_fault_or_when_the_rule_has_its_own() -> None:
    spec = _spec("network.host_unreachable")
    assert take_over(None, spec, holder=None, now=LATER) == Refusal(
        "no unresolved reported fault for network.host_unreachable to take over"
    )
    own = _incident(id=9, rule_id="network.host_unreachable")
    assert take_over(_incident(), spec, holder=own, now=LATER) == Refusal(
        "incident #9 already holds T-1/network.host_unreachable"
    )


# -- resolving: by its rule, with its group, or by staff -----------------------------------


def test_resolving_by_staff_and_by_rule_write_the_same_columns() -> None:
    by_staff = resolve_by_staff(
        _incident(ACKNOWLEDGED), by="alice", resolution="new roll", now=LATER
    )
    by_rule = condition_cleared(_incident(), now=LATER)
    assert isinstance(by_staff, Transition) and isinstance(by_rule, Transition)
    assert by_staff.changes == {
        "state": "resolved",
        "open_key": None,
        "resolved_at": LATER,
        "resolved_by": "alice",
        "resolution": "new roll",
        "updated_at": LATER,
    }
    assert by_rule.changes == {
        **by_staff.changes,
        "resolved_by": None,
        "resolution": CONDITION_CLEARED,
    }
    assert by_staff.notify is by_rule.notify is NotificationEvent.RESOLVED


def test_a_fleet_incidents_terminal_resolves_silently() -> None:
    decision = condition_cleared(_incident(parent_id=40), now=LATER)
    assert isinstance(decision, Transition) and decision.notify is None
    # Staff resolving it by hand are told, as they always were.
    by_hand = resolve_by_staff(_incident(parent_id=40), by="alice", resolution="", now=LATER)
    assert isinstance(by_hand, Transition) and by_hand.notify is NotificationEvent.RESOLVED


def test_a_fleet_incident_resolves_with_its_last_terminal() -> None:
    fleet = _incident(id=40, kind=IncidentKind.FLEET, terminal_id=None)
    assert group_recovered(fleet, unresolved_children=2, now=LATER) == Refusal(
        "incident #40 has 2 terminals still affected"
    )
    done = group_recovered(fleet, unresolved_children=0, now=LATER)
    assert isinstance(done, Transition) and done.changes["resolution"] == GROUP_RECOVERED
    assert done.notify is NotificationEvent.RESOLVED
    already = group_recovered(
        _incident(RESOLVED, id=40, kind=IncidentKind.FLEET), unresolved_children=0, now=LATER
    )
    assert already == Refusal("incident #40 is already resolved"), "nobody is told twice"


def test_an_emptied_narrower_group_closes_into_the_wider_one_silently() -> None:
    site = _incident(id=40, kind=IncidentKind.FLEET, terminal_id=None)
    assert isinstance(group_merged(site, unresolved_children=1, into=41, now=LATER), Refusal)
    merged = group_merged(site, unresolved_children=0, into=41, now=LATER)
    assert isinstance(merged, Transition)
    assert merged.changes["resolution"] == "merged into incident #41"
    assert merged.notify is None


def test_staff_escalation_names_where_it_went_and_tells_the_webhooks() -> None:
    decision = escalate(_incident(ACKNOWLEDGED), to=Escalation.SWAP, now=LATER)
    assert isinstance(decision, Transition)
    assert decision.changes == {"escalated_to": "swap", "updated_at": LATER}
    assert decision.notify is NotificationEvent.ESCALATED


def test_acknowledging_says_who_and_when_and_tells_nobody() -> None:
    decision = acknowledge(_incident(), by="alice", now=LATER)
    assert isinstance(decision, Transition) and decision.leads_to is ACKNOWLEDGED
    assert decision.changes == {
        "state": "acknowledged",
        "acknowledged_at": LATER,
        "acknowledged_by": "alice",
        "updated_at": LATER,
    }
    assert decision.notify is None
