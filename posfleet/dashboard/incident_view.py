"""What the incident pages show, as small view objects for their templates.

Pure functions from records to plain values: the templates (``incidents.html``,
``incident_list.html``, ``incident.html`` and the ``incident_*.html`` fragments) lay
them out, word them (every visible string is marked for translation there) and escape
every value, since terminal ids, notes and rule text come from outside. The action forms
are prepared in :mod:`posfleet.dashboard.incident_forms`, the playbook results in
:mod:`posfleet.dashboard.incident_runs_view`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from posfleet.dashboard.case_views import NEW_CASE_PATH, STATE_LABELS, case_path
from posfleet.dashboard.incident_reading import (
    ChildSummary,
    IncidentDetail,
    IncidentPage,
    IncidentQuery,
)
from posfleet.dashboard.incident_runs_view import RunArticle, run_article
from posfleet.dashboard.templating import _
from posfleet.diagnostics.incident_guidance import Guidance
from posfleet.diagnostics.incident_lifecycle import CONDITION_CLEARED
from posfleet.diagnostics.rule_model import Escalation
from posfleet.store.incidents import IncidentKind, IncidentNote, IncidentRecord, IncidentState

INCIDENTS_PATH = "/incidents"
FILTER_STATES: tuple[str | None, ...] = (None, "open", "acknowledged", "resolved")
"""The list's state filters; None is "open and acknowledged" (the template words them)."""
DURATION_UNITS = (("d", 86_400), ("h", 3_600), ("min", 60))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"
_SEVERITY_KIND = {"critical": "bad", "error": "bad", "warning": "warn"}
_STATE_KIND = {"open": "bad", "acknowledged": "warn", "resolved": "ok"}
STATE_WORDS = (_("open"), _("acknowledged"), _("resolved"))
"""The incident states as the badges word them (marked here; the templates translate the
stored state with the ``translated`` filter)."""


def duration(span: timedelta) -> str:
    """A span in words: ``14 min``, ``3 h 5 min``, ``2 d``."""
    seconds = int(span.total_seconds())
    for index, (unit, size) in enumerate(DURATION_UNITS):
        if seconds >= size:
            text = f"{seconds // size} {unit}"
            if index + 1 < len(DURATION_UNITS):
                smaller, smaller_size = DURATION_UNITS[index + 1]
                rest = seconds % size // smaller_size
                if rest:
                    text += f" {rest} {smaller}"
            return text
    return _("under a minute")


def incident_path(incident_id: int) -> str:
    """The detail page of an incident."""
    return f"{INCIDENTS_PATH}/{incident_id}"


def severity_kind(severity: str) -> str:
    """The badge colour of an incident severity."""
    return _SEVERITY_KIND.get(severity, "muted")


def state_kind(state: IncidentState) -> str:
    """The badge colour of an incident's lifecycle state."""
    return _STATE_KIND.get(state.value, "muted")


# -- the list ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetSize:
    """How many terminals a fleet incident holds, and how many are still affected."""

    total: int
    still_affected: int | None
    """Set while the incident is unresolved and some of its terminals recovered."""


@dataclass(frozen=True)
class IncidentLine:
    """One row of an incident table (the list, or a fleet incident's terminals)."""

    record: IncidentRecord
    path: str
    severity_kind: str
    state_kind: str
    fleet: FleetSize | None
    """For a fleet incident: its terminals; None for one terminal's incident."""
    place: str
    """``site / merchant``, either alone, or ``-``."""


def _site(record: IncidentRecord, children: ChildSummary | None) -> str | None:
    return record.site_id or (children.site_id if children is not None else None)


def _merchant(record: IncidentRecord, children: ChildSummary | None) -> str | None:
    return record.merchant_id or (children.merchant_id if children is not None else None)


def fleet_size(record: IncidentRecord, children: ChildSummary | None) -> FleetSize | None:
    """A fleet incident's terminal count (resolved ones included); None for a terminal's."""
    if record.kind is not IncidentKind.FLEET:
        return None
    total = children.total if children is not None else 0
    still = (
        children.unresolved
        if children is not None
        and record.state is not IncidentState.RESOLVED
        and children.unresolved < total
        else None
    )
    return FleetSize(total, still)


def incident_row(record: IncidentRecord, children: ChildSummary | None) -> IncidentLine:
    """One row: severity, title, terminal (or fleet size), place, state, age, assignee."""
    parts = [part for part in (_site(record, children), _merchant(record, children)) if part]
    return IncidentLine(
        record=record,
        path=incident_path(record.id),
        severity_kind=severity_kind(record.severity),
        state_kind=state_kind(record.state),
        fleet=fleet_size(record, children),
        place=" / ".join(parts) if parts else "-",
    )


def list_link(state: str | None, before: str | None = None) -> str:
    """The list page with a state filter and a paging cursor."""
    params = {name: value for name, value in (("state", state), ("before", before)) if value}
    return f"{INCIDENTS_PATH}?{urlencode(params)}" if params else INCIDENTS_PATH


def list_context(page: IncidentPage, query: IncidentQuery) -> dict[str, Any]:
    """What ``incident_list.html`` (the refreshable part of the list page) shows."""
    state = query.state.value if query.state is not None else None
    return {
        "rows": [incident_row(row.incident, row.children) for row in page.rows],
        "filters": [(value, list_link(value), value == state) for value in FILTER_STATES],
        "state": state,
        "older_path": (list_link(state, page.next) if page.next is not None else None),
    }


# -- the detail page -------------------------------------------------------------------


@dataclass(frozen=True)
class Occurrences:
    """How often the condition was seen; over how many terminals for a fleet incident."""

    count: int
    terminals: int | None


@dataclass(frozen=True)
class TimelineEntry:
    """One line of the timeline; ``kind`` picks its wording in ``incident_timeline.html``."""

    ts: datetime
    kind: str
    who: str = ""
    text: str = ""
    target: str = ""
    run: RunArticle | None = None

    @property
    def when(self) -> str:
        """The moment, as the timeline prints it."""
        return self.ts.strftime(TIME_FORMAT)


def escalation_name(value: object) -> str:
    """An escalation in words (``technician visit``); an unknown one as it is stored."""
    names = {
        Escalation.REMOTE_FIX: _("remote fix"),
        Escalation.ON_SITE: _("technician visit"),
        Escalation.SWAP: _("terminal swap"),
    }
    try:
        return names[Escalation(str(value))]
    except ValueError:
        return str(value)


def occurrences(record: IncidentRecord, children: ChildSummary | None) -> Occurrences:
    """The incident's occurrences; a fleet incident's summed over its terminals."""
    if children is None:
        return Occurrences(record.occurrences, None)
    return Occurrences(children.occurrences, children.total)


def _note_entry(note: IncidentNote) -> TimelineEntry:
    if note.kind == "assignment":
        assignee = note.detail.get("assignee")
        kind = "assignment" if assignee else "unassignment"
        return TimelineEntry(note.ts, kind, who=note.author, target=str(assignee or ""))
    if note.kind == "escalation":
        reason = note.detail.get("reason")
        to = escalation_name(note.detail.get("to"))
        return TimelineEntry(
            note.ts, "escalation", who=note.author, target=to, text=str(reason or "")
        )
    if note.kind in {"note", "command"}:
        return TimelineEntry(note.ts, note.kind, who=note.author, text=note.text)
    return TimelineEntry(
        note.ts, "other", who=note.author, text=note.text, target=note.kind.capitalize()
    )


def _resolution_entry(record: IncidentRecord, at: datetime) -> TimelineEntry:
    if record.resolved_by is not None:
        return TimelineEntry(at, "resolved_by", who=record.resolved_by, text=record.resolution)
    if record.resolution == CONDITION_CLEARED:
        after = duration(at - record.opened_at)
        return TimelineEntry(at, "resolved_cleared", text=after)
    return TimelineEntry(at, "resolved_itself", text=record.resolution or _("condition cleared"))


def timeline(detail: IncidentDetail, runs: list[RunArticle]) -> list[TimelineEntry]:
    """Opening, comebacks, acknowledgement, notes, runs and resolution, oldest first."""
    record = detail.incident
    entries = [TimelineEntry(record.opened_at, "opened")]
    if record.reopen_count:
        entries.append(TimelineEntry(record.opened_at, "came_back", text=str(record.reopen_count)))
    if record.acknowledged_at is not None:
        who = record.acknowledged_by or "-"
        entries.append(TimelineEntry(record.acknowledged_at, "acknowledged", who=who))
    shown_runs = {article.run.id for article in runs}
    for note in detail.notes:
        # A playbook's note repeats its run, which has an entry of its own below.
        if note.kind == "playbook" and note.detail.get("run_id") in shown_runs:
            continue
        entries.append(_note_entry(note))
    entries.extend(TimelineEntry(article.run.started_at, "run", run=article) for article in runs)
    if record.resolved_at is not None:
        entries.append(_resolution_entry(record, record.resolved_at))
    return sorted(entries, key=lambda entry: entry.ts)


def detail_context(detail: IncidentDetail, guidance: Guidance) -> dict[str, Any]:
    """What ``incident.html`` shows apart from the action forms and the terminal."""
    record, children = detail.incident, detail.summary
    runs = [run_article(view) for view in detail.runs]
    return {
        "record": record,
        "list_path": INCIDENTS_PATH,
        "severity_kind": severity_kind(record.severity),
        "state_kind": state_kind(record.state),
        "fleet": fleet_size(record, children),
        "site": _site(record, children),
        "merchant": _merchant(record, children),
        "merchants": children.merchants if children is not None else 0,
        "occurrences": occurrences(record, children),
        "guidance": guidance,
        "next_step_name": (
            escalation_name(guidance.next_step) if guidance.next_step is not None else None
        ),
        "escalated_to": (escalation_name(record.escalated_to) if record.escalated_to else None),
        "runs": list(reversed(runs)),
        "children": (
            [incident_row(child, None) for child in detail.children]
            if record.kind is IncidentKind.FLEET
            else None
        ),
        "timeline": timeline(detail, runs),
        "cases": [
            (case_path(case.id), case, STATE_LABELS.get(case.state, case.state.value))
            for case in detail.cases
        ],
        "new_case_path": (
            f"{NEW_CASE_PATH}?{urlencode({'terminal': record.terminal_id})}"
            if record.terminal_id
            else None
        ),
    }
