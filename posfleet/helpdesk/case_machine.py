"""A case's life as pure code: which state may follow which, what each change needs,
the report timings, and when a follow-up is due.

No I/O here: :mod:`posfleet.helpdesk.case_desk` reads a case, asks this module what a
change does, and stores the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from posfleet.helpdesk.errors import CaseInputError, CaseTransitionError
from posfleet.store.cases import CaseRecord, CaseState

MAX_REASON = 2000
"""Longest reason or confirmation text kept with a state change."""

NEXT_STATES: Mapping[CaseState, frozenset[CaseState]] = {
    CaseState.OPEN: frozenset(
        {CaseState.WAITING_MERCHANT, CaseState.WAITING_ONSITE, CaseState.RESOLVED, CaseState.CLOSED}
    ),
    CaseState.WAITING_MERCHANT: frozenset(
        {CaseState.OPEN, CaseState.WAITING_ONSITE, CaseState.RESOLVED, CaseState.CLOSED}
    ),
    CaseState.WAITING_ONSITE: frozenset(
        {CaseState.OPEN, CaseState.WAITING_MERCHANT, CaseState.RESOLVED, CaseState.CLOSED}
    ),
    # Reopening a resolved case is allowed: the merchant calls back, it failed again.
    CaseState.RESOLVED: frozenset({CaseState.OPEN, CaseState.CLOSED}),
    # Closed is final: a new complaint is a new case, so the report figures stay true.
    CaseState.CLOSED: frozenset(),
}
"""The states each state may change to."""


class FollowUp(StrEnum):
    """Where a case's follow-up date stands on a given day."""

    NONE = "none"
    UPCOMING = "upcoming"
    DUE_TODAY = "due_today"
    OVERDUE = "overdue"


def _text(field: str, value: str, *, required: bool, what: str) -> str:
    text = value.strip()
    if len(text) > MAX_REASON:
        raise CaseInputError(field, f"the {what} must be at most {MAX_REASON} characters long")
    if required and not text:
        raise CaseInputError(field, f"give the {what}")
    return text


def state_change(
    case: CaseRecord, target: CaseState, *, reason: str, confirmation: str, now: datetime
) -> dict[str, Any]:
    """The columns that change when ``case`` moves to ``target``.

    Every change but closing needs a reason; closing needs the merchant's confirmation
    (who confirmed, how) instead, and a closed case counts as resolved for the reports
    if it never was. Raises :class:`CaseTransitionError` for a move the life does not
    allow and :class:`CaseInputError` for a missing reason or confirmation.
    """
    if target is case.state:
        raise CaseTransitionError(f"case #{case.id} is {case.state.value} already")
    if target not in NEXT_STATES[case.state]:
        raise CaseTransitionError(
            f"case #{case.id} is {case.state.value}: it cannot become {target.value}"
        )
    closing = target is CaseState.CLOSED
    _text("reason", reason, required=not closing, what="reason for the change")
    said = _text("confirmation", confirmation, required=closing, what="merchant's confirmation")
    values: dict[str, Any] = {"state": target.value, "updated_at": now}
    values.update(responded(case, now))
    if target is CaseState.RESOLVED or (closing and case.resolved_at is None):
        values["resolved_at"] = now
    if target is CaseState.OPEN:
        values["resolved_at"] = None  # reopened: resolution is measured again
    if closing:
        values["closed_at"] = now
        values["merchant_confirmation"] = said
    return values


def responded(case: CaseRecord, now: datetime) -> dict[str, Any]:
    """``first_response_at`` if this staff action is the case's first after opening."""
    return {"first_response_at": now} if case.first_response_at is None else {}


def time_to_first_response(case: CaseRecord) -> timedelta | None:
    """From opening to the first staff action after it; None until there is one."""
    if case.first_response_at is None:
        return None
    return case.first_response_at - case.opened_at


def time_to_resolution(case: CaseRecord) -> timedelta | None:
    """From opening to resolution (or closing); None while unresolved."""
    if case.resolved_at is None:
        return None
    return case.resolved_at - case.opened_at


def helpdesk_day(now: datetime) -> date:
    """The calendar day follow-ups are judged by: the UTC date of ``now``."""
    return now.astimezone(UTC).date()


def follow_up_status(case: CaseRecord, today: date) -> FollowUp:
    """Whether the case's follow-up is upcoming, due today or overdue (closed: none)."""
    if case.follow_up_on is None or case.state is CaseState.CLOSED:
        return FollowUp.NONE
    if case.follow_up_on > today:
        return FollowUp.UPCOMING
    return FollowUp.DUE_TODAY if case.follow_up_on == today else FollowUp.OVERDUE
