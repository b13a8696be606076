"""A case's life without a database: transitions, what they need, timings, follow-ups."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from posfleet.helpdesk import (
    NEXT_STATES,
    CaseInputError,
    CaseTransitionError,
    FollowUp,
    follow_up_status,
    state_change,
    time_to_first_response,
    time_to_resolution,
)
from posfleet.store.cases import CaseRecord, CaseState

OPENED = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
LATER = OPENED + timedelta(minutes=25)


def _case(state: CaseState = CaseState.OPEN, **extra: Any) -> CaseRecord:
    fields: dict[str, Any] = {
        "id": 7,
        "merchant_id": "M-1",
        "subject": "Reader fails",
        "complaint": "card error",
        "channel": "phone",
        "category": "card_reader",
        "priority": "normal",
        "state": state,
        "caller_name": "",
        "caller_phone": "",
        "assignee": None,
        "opened_by": "user:sam",
        "opened_at": OPENED,
        "updated_at": OPENED,
        "first_response_at": None,
        "resolved_at": None,
        "closed_at": None,
        "merchant_confirmation": None,
        "follow_up_on": None,
        "follow_up_note": "",
        "terminal_ids": [],
        **extra,
    }
    return CaseRecord.model_validate(fields)


ALL_MOVES = [(a, b) for a in CaseState for b in CaseState if a is not b]


@pytest.mark.parametrize(("start", "target"), ALL_MOVES)
def test_every_move_is_allowed_or_refused_by_the_table(start: CaseState, target: CaseState) -> None:
    case = _case(start)
    if target in NEXT_STATES[start]:
        values = state_change(case, target, reason="why", confirmation="yes, Mrs Li", now=LATER)
        assert values["state"] == target.value
    else:
        with pytest.raises(CaseTransitionError):
            state_change(case, target, reason="why", confirmation="yes", now=LATER)


def test_a_closed_case_stays_closed_and_resolved_can_reopen() -> None:
    assert NEXT_STATES[CaseState.CLOSED] == frozenset()
    reopened = state_change(
        _case(CaseState.RESOLVED, resolved_at=LATER), CaseState.OPEN, reason="again",
        confirmation="", now=LATER,
    )  # fmt: skip
    assert reopened["resolved_at"] is None


def test_closing_needs_the_merchants_confirmation_and_counts_as_resolved() -> None:
    with pytest.raises(CaseInputError) as refused:
        state_change(_case(), CaseState.CLOSED, reason="fixed", confirmation=" ", now=LATER)
    assert refused.value.field == "confirmation"
    values = state_change(
        _case(), CaseState.CLOSED, reason="", confirmation="Mr Wang: works", now=LATER
    )
    assert values["merchant_confirmation"] == "Mr Wang: works"
    assert values["closed_at"] == values["resolved_at"] == LATER
    assert values["first_response_at"] == LATER


def test_other_changes_need_a_reason() -> None:
    with pytest.raises(CaseInputError) as refused:
        state_change(_case(), CaseState.WAITING_ONSITE, reason="", confirmation="", now=LATER)
    assert refused.value.field == "reason"


def test_report_timings() -> None:
    case = _case(first_response_at=LATER, resolved_at=OPENED + timedelta(hours=3))
    assert time_to_first_response(case) == timedelta(minutes=25)
    assert time_to_resolution(case) == timedelta(hours=3)
    assert time_to_first_response(_case()) is None
    assert time_to_resolution(_case()) is None


@pytest.mark.parametrize(
    ("follow_up_on", "state", "expected"),
    [
        (None, CaseState.OPEN, FollowUp.NONE),
        (date(2026, 3, 3), CaseState.OPEN, FollowUp.UPCOMING),
        (date(2026, 3, 2), CaseState.WAITING_MERCHANT, FollowUp.DUE_TODAY),
        (date(2026, 2, 27), CaseState.RESOLVED, FollowUp.OVERDUE),
        (date(2026, 2, 27), CaseState.CLOSED, FollowUp.NONE),
    ],
)
def test_follow_up_status(follow_up_on: date | None, state: CaseState, expected: FollowUp) -> None:
    case = _case(state, follow_up_on=follow_up_on)
    assert follow_up_status(case, date(2026, 3, 2)) is expected
