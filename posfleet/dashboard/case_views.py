"""What the case pages show: labels, the state of each linked object, the reminders.

Shared by the case pages (:mod:`posfleet.dashboard.cases_page`), the terminal page's
cases panel and the API's case answer, so a case reads the same everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pydantic
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.templating import _
from posfleet.helpdesk import FollowUp, follow_up_status, time_to_first_response, time_to_resolution
from posfleet.store.cases import (
    CaseCategory,
    CaseChannel,
    CaseLink,
    CaseLinkKind,
    CaseNote,
    CasePriority,
    CaseRecord,
    CaseState,
)
from posfleet.store.schema import incidents, playbook_runs, terminal_commands

CASES_PATH = "/cases"
NEW_CASE_PATH = "/cases/new"

STATE_LABELS = {
    CaseState.OPEN: _("Open"),
    CaseState.WAITING_MERCHANT: _("Waiting for the merchant"),
    CaseState.WAITING_ONSITE: _("Waiting for an on-site visit"),
    CaseState.RESOLVED: _("Resolved"),
    CaseState.CLOSED: _("Closed"),
}
CHANNEL_LABELS = {
    CaseChannel.PHONE: _("Phone"),
    CaseChannel.EMAIL: _("E-mail"),
    CaseChannel.WALK_IN: _("Walk-in"),
    CaseChannel.CHAT: _("Chat"),
}
CATEGORY_LABELS = {
    CaseCategory.CARD_READER: _("Card reader"),
    CaseCategory.PRINTER: _("Printer"),
    CaseCategory.NETWORK: _("Network"),
    CaseCategory.PAYMENTS: _("Payments"),
    CaseCategory.HARDWARE: _("Hardware"),
    CaseCategory.SOFTWARE: _("Software"),
    CaseCategory.OTHER: _("Other"),
}
PRIORITY_LABELS = {
    CasePriority.LOW: _("Low"),
    CasePriority.NORMAL: _("Normal"),
    CasePriority.HIGH: _("High"),
    CasePriority.URGENT: _("Urgent"),
}
FOLLOW_UP_LABELS = {
    FollowUp.NONE: "",
    FollowUp.UPCOMING: _("upcoming"),
    FollowUp.DUE_TODAY: _("due today"),
    FollowUp.OVERDUE: _("overdue"),
}
LINK_LABELS = {
    CaseLinkKind.INCIDENT: _("Incident"),
    CaseLinkKind.COMMAND: _("Remote command"),
    CaseLinkKind.PLAYBOOK_RUN: _("Playbook run"),
}


def case_path(case_id: int) -> str:
    """The page of one case."""
    return f"{CASES_PATH}/{case_id}"


class LinkedObject(pydantic.BaseModel):
    """A case's link with what it points at, as it is now."""

    link: CaseLink
    title: str
    """The incident's title, the command's name, the playbook's name."""
    state: str
    """The linked object's state now (``gone`` if it no longer exists)."""
    path: str | None
    """Its page, where it has one."""


class CaseDetail(pydantic.BaseModel):
    """One case with its timeline, its links and the figures the reports use."""

    case: CaseRecord
    notes: list[CaseNote]
    links: list[LinkedObject]
    follow_up: FollowUp
    first_response_s: float | None
    resolution_s: float | None


# What each kind of link points at: (its id column, its title column, its state column).
_LINKED_COLUMNS = {
    CaseLinkKind.INCIDENT: (incidents.c.id, incidents.c.title, incidents.c.state),
    CaseLinkKind.PLAYBOOK_RUN: (
        playbook_runs.c.id,
        playbook_runs.c.playbook,
        playbook_runs.c.state,
    ),
    CaseLinkKind.COMMAND: (
        terminal_commands.c.id,
        terminal_commands.c.name,
        terminal_commands.c.state,
    ),
}


async def linked_objects(conn: AsyncConnection, links: Sequence[CaseLink]) -> list[LinkedObject]:
    """Each link with its object's title and present state (a handful per case)."""
    found: list[LinkedObject] = []
    for link in links:
        id_column, title_column, state_column = _LINKED_COLUMNS[link.kind]
        # Incident and run ids are numbers; the desk only links ids that exist.
        ref: int | str = link.ref if link.kind is CaseLinkKind.COMMAND else int(link.ref)
        query = sa.select(title_column, state_column).where(id_column == ref)
        row = (await conn.execute(query)).first()
        title, state = (str(row[0]), str(row[1])) if row is not None else (link.ref, "gone")
        path = f"/incidents/{link.ref}" if link.kind is CaseLinkKind.INCIDENT else None
        found.append(LinkedObject(link=link, title=title, state=state, path=path))
    return found


def case_detail(
    case: CaseRecord, notes: list[CaseNote], links: list[LinkedObject], today: date
) -> CaseDetail:
    """The API's and the page's view of one case."""
    first = time_to_first_response(case)
    resolution = time_to_resolution(case)
    return CaseDetail(
        case=case,
        notes=notes,
        links=links,
        follow_up=follow_up_status(case, today),
        first_response_s=first.total_seconds() if first is not None else None,
        resolution_s=resolution.total_seconds() if resolution is not None else None,
    )


def labels() -> dict[str, object]:
    """The label tables every case template uses."""
    return {
        "state_labels": STATE_LABELS,
        "channel_labels": CHANNEL_LABELS,
        "category_labels": CATEGORY_LABELS,
        "priority_labels": PRIORITY_LABELS,
        "follow_up_labels": FOLLOW_UP_LABELS,
        "link_labels": LINK_LABELS,
        "cases_path": CASES_PATH,
        "new_case_path": NEW_CASE_PATH,
    }
