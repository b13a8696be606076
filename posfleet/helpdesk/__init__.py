"""The helpdesk: merchant cases, followed from the merchant's call until they confirm.

Public surface: :class:`CaseDesk` (the staff actions), the case's life
(:func:`state_change`, :data:`NEXT_STATES`, :func:`follow_up_status`, the report
timings) and the errors. The rows live in :mod:`posfleet.store.cases`. May import
``contract`` and ``store`` only; the dashboard and the CLI import it.
"""

from __future__ import annotations

from posfleet.helpdesk.case_desk import CaseDesk, check_draft
from posfleet.helpdesk.case_machine import (
    NEXT_STATES,
    FollowUp,
    follow_up_status,
    helpdesk_day,
    state_change,
    time_to_first_response,
    time_to_resolution,
)
from posfleet.helpdesk.errors import (
    CaseInputError,
    CaseNotFoundError,
    CaseTransitionError,
    HelpdeskError,
    LinkTargetNotFoundError,
)

__all__ = [
    "NEXT_STATES",
    "CaseDesk",
    "CaseInputError",
    "CaseNotFoundError",
    "CaseTransitionError",
    "FollowUp",
    "HelpdeskError",
    "LinkTargetNotFoundError",
    "check_draft",
    "follow_up_status",
    "helpdesk_day",
    "state_change",
    "time_to_first_response",
    "time_to_resolution",
]
