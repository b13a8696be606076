"""Pydantic models of ``/api/v1/cases``: path, query, bodies and answers."""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated

import pydantic

from posfleet.contract import TERMINAL_ID_PATTERN
from posfleet.dashboard.paging_cursor import Cursor
from posfleet.dashboard.query_params import MAX_ROW_ID
from posfleet.helpdesk.case_desk import MAX_NOTE, MAX_TERMINALS
from posfleet.helpdesk.case_machine import MAX_REASON
from posfleet.store.cases import (
    CaseCategory,
    CaseChannel,
    CaseLinkKind,
    CasePriority,
    CaseRecord,
    CaseState,
)

RowId = Annotated[int, pydantic.Field(ge=1, le=MAX_ROW_ID)]
TerminalId = Annotated[str, pydantic.Field(pattern=TERMINAL_ID_PATTERN)]
UserName = Annotated[str, pydantic.Field(min_length=1, max_length=128)]


class FollowUpFilter(StrEnum):
    """Which follow-ups a list shows."""

    DUE_TODAY = "due_today"
    OVERDUE = "overdue"
    DUE = "due"
    """Due today or overdue: the reminder list."""


class CaseIdPath(pydantic.BaseModel):
    """``{case_id}`` in a path."""

    case_id: RowId


class CaseListQuery(pydantic.BaseModel):
    """``GET /api/v1/cases``: every given filter must hold; newest first."""

    model_config = pydantic.ConfigDict(extra="forbid")

    state: str | None = pydantic.Field(
        None, max_length=200, description="Comma-separated states, or all (default: not closed)."
    )
    assignee: UserName | None = None
    merchant_id: Annotated[str, pydantic.Field(min_length=1, max_length=64)] | None = None
    terminal_id: TerminalId | None = None
    follow_up: FollowUpFilter | None = None
    limit: Annotated[int, pydantic.Field(ge=1, le=500)] = 100
    before: Cursor | None = None


class CaseCreateBody(pydantic.BaseModel):
    """``POST /api/v1/cases``: a merchant's call."""

    model_config = pydantic.ConfigDict(extra="forbid")

    merchant_id: Annotated[str, pydantic.Field(min_length=1, max_length=64)]
    subject: Annotated[str, pydantic.Field(min_length=1, max_length=200)]
    complaint: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_NOTE)]
    """The complaint in the merchant's own words."""
    channel: CaseChannel
    category: CaseCategory
    priority: CasePriority = CasePriority.NORMAL
    terminal_ids: Annotated[list[TerminalId], pydantic.Field(max_length=MAX_TERMINALS)] = []
    caller_name: Annotated[str, pydantic.Field(max_length=128)] = ""
    caller_phone: Annotated[str, pydantic.Field(max_length=64)] = ""
    assignee: UserName | None = None
    follow_up_on: date | None = None


class CasePatchBody(pydantic.BaseModel):
    """``PATCH /api/v1/cases/{case_id}``: any of state, assignee and follow-up.

    A state change takes a ``reason``; closing takes the merchant's ``confirmation``.
    ``assignee: null`` unassigns, ``follow_up_on: null`` clears the follow-up.
    """

    model_config = pydantic.ConfigDict(extra="forbid")

    state: CaseState | None = None
    reason: Annotated[str, pydantic.Field(max_length=MAX_REASON)] = ""
    confirmation: Annotated[str, pydantic.Field(max_length=MAX_REASON)] = ""
    assignee: UserName | None = None
    follow_up_on: date | None = None
    follow_up_note: Annotated[str, pydantic.Field(max_length=200)] = ""


class CaseNoteBody(pydantic.BaseModel):
    """``POST /api/v1/cases/{case_id}/notes``."""

    model_config = pydantic.ConfigDict(extra="forbid")

    text: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_NOTE)]


class CaseLinkBody(pydantic.BaseModel):
    """``POST /api/v1/cases/{case_id}/links``: an incident id, a command id or a run id."""

    model_config = pydantic.ConfigDict(extra="forbid")

    kind: CaseLinkKind
    ref: Annotated[str, pydantic.Field(min_length=1, max_length=64)]


class CaseList(pydantic.BaseModel):
    """One page of cases, and the reminder counts."""

    items: list[CaseRecord]
    next: str | None
    """The ``before`` of the next page; null on the last."""
    due_today: int
    overdue: int


class CaseLinkAnswer(pydantic.BaseModel):
    """The case after a link; ``created`` is false when it was linked already."""

    case: CaseRecord
    created: bool
