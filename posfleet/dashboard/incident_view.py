"""The incident pages as HTML: the list, the detail and the staff action forms.

Pure rendering from records to :class:`Markup`; every value goes through ``element``,
which escapes it (terminal ids, notes and rule text come from outside).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlencode

from posfleet.dashboard.csrf import CSRF_FIELD
from posfleet.dashboard.fleet_view import COLUMNS as TERMINAL_COLUMNS
from posfleet.dashboard.fleet_view import badge, relative_age, terminal_row
from posfleet.dashboard.incident_reading import IncidentDetail, IncidentPage, IncidentQuery
from posfleet.dashboard.markup import Markup, concat, element
from posfleet.store.incidents import IncidentKind, IncidentRecord, IncidentState

INCIDENTS_PATH = "/incidents"
LIST_COLUMNS = (
    "Severity",
    "Incident",
    "Terminal",
    "Site / merchant",
    "State",
    "Opened",
    "Assignee",
)
_MISSING = "-"
_SEVERITY_KIND = {"critical": "bad", "error": "bad", "warning": "warn"}
_STATE_KIND = {"open": "bad", "acknowledged": "warn", "resolved": "ok"}
_ESCALATION_WORDS = {
    "remote_fix": "Remote fix: support can solve this over the phone or with a remote command.",
    "on_site": "On-site visit: send a technician to the merchant.",
    "swap": "Swap: ship a replacement terminal.",
}


@dataclass(frozen=True)
class ActionOptions:
    """Which action forms the detail page offers, and the token the forms carry."""

    csrf_token: str
    can_act: bool
    playbooks: Sequence[tuple[str, str]] = ()
    """(name, title) of the playbooks that can run; empty when no broker is configured."""


def incident_path(incident_id: int) -> str:
    """The detail page of an incident."""
    return f"{INCIDENTS_PATH}/{incident_id}"


def severity_badge(severity: str) -> Markup:
    """The severity of an incident as a coloured label."""
    return badge(severity, _SEVERITY_KIND.get(severity, "muted"))


def state_badge(state: IncidentState) -> Markup:
    """The lifecycle state of an incident as a coloured label."""
    return badge(state.value, _STATE_KIND.get(state.value, "muted"))


def _age(then: datetime, now: datetime) -> Markup:
    return element("time", relative_age(then, now), datetime=then.isoformat())


def _place(record: IncidentRecord) -> str:
    parts = [part for part in (record.site_id, record.merchant_id) if part]
    return " / ".join(parts) if parts else _MISSING


def _terminal_cell(record: IncidentRecord, open_children: int | None) -> Markup:
    if record.kind is IncidentKind.FLEET:
        count = open_children or 0
        label = f"fleet: {count} terminal{'' if count == 1 else 's'}"
        return element("a", label, href=incident_path(record.id))
    return element(
        "a", element("code", record.terminal_id or _MISSING), href=incident_path(record.id)
    )


def incident_row(record: IncidentRecord, open_children: int | None, now: datetime) -> Markup:
    """One row of the list: severity, title, terminal, place, state, age, assignee."""
    cells: Iterable[object] = (
        severity_badge(record.severity),
        element("a", record.title, href=incident_path(record.id)),
        _terminal_cell(record, open_children),
        _place(record),
        state_badge(record.state),
        _age(record.opened_at, now),
        record.assignee or _MISSING,
    )
    return element("tr", *(element("td", cell) for cell in cells), data_incident_id=record.id)


def _list_link(state: str | None, before: int | None = None) -> str:
    params = {name: value for name, value in (("state", state), ("before", before)) if value}
    return f"{INCIDENTS_PATH}?{urlencode(params)}" if params else INCIDENTS_PATH


def _filters(query: IncidentQuery) -> Markup:
    current = query.state.value if query.state is not None else None
    choices = (
        ("Open and acknowledged", None),
        ("Open", "open"),
        ("Acknowledged", "acknowledged"),
        ("Resolved", "resolved"),
    )
    links = (
        element(
            "a",
            label,
            href=_list_link(value),
            aria_current="page" if value == current else None,
        )
        for label, value in choices
    )
    return element("nav", *links, class_="filters", aria_label="Filter by state")


def _empty_text(query: IncidentQuery) -> str:
    if query.state is None:
        return "No open incidents."
    return f"No {query.state.value} incidents."


def incident_list_section(page: IncidentPage, query: IncidentQuery, now: datetime) -> Markup:
    """The refreshable part of the list page: filters, the table and paging."""
    head = element(
        "thead", element("tr", *(element("th", name, scope="col") for name in LIST_COLUMNS))
    )
    if page.rows:
        rows = concat(incident_row(row.incident, row.open_children, now) for row in page.rows)
    else:
        rows = element("tr", element("td", _empty_text(query), colspan=len(LIST_COLUMNS)))
    table = element("table", head, element("tbody", rows), class_="fleet incidents")
    state = query.state.value if query.state is not None else None
    paging = (
        element(
            "p",
            element("a", "Older incidents", href=_list_link(state, page.next_before)),
            class_="paging",
        )
        if page.next_before is not None
        else None
    )
    return concat([_filters(query), table, paging])


# -- detail -------------------------------------------------------------------------------


def _facts(record: IncidentRecord, now: datetime) -> Markup:
    terminal: object = (
        element("code", record.terminal_id)
        if record.terminal_id
        else f"fleet incident ({record.correlation or record.rule_id})"
    )
    pairs: list[tuple[str, object]] = [
        ("State", state_badge(record.state)),
        ("Terminal", terminal),
        ("Site", record.site_id or _MISSING),
        ("Merchant", record.merchant_id or _MISSING),
        ("Model", record.model or _MISSING),
        ("Firmware", record.firmware_version or _MISSING),
        ("Opened", _age(record.opened_at, now)),
        ("Last seen", _age(record.last_seen_at, now)),
        ("Occurrences", record.occurrences),
        ("Assignee", record.assignee or _MISSING),
        ("Rule", element("code", record.rule_id)),
    ]
    return element(
        "dl",
        *(concat([element("dt", name), element("dd", value)]) for name, value in pairs),
        class_="facts",
    )


def _escalation(record: IncidentRecord) -> Markup:
    suggested = _ESCALATION_WORDS.get(record.escalation, record.escalation)
    escalated = (
        element("p", "Escalated to: ", element("strong", record.escalated_to.replace("_", " ")))
        if record.escalated_to
        else None
    )
    return element("section", element("h2", "Escalation"), element("p", suggested), escalated)


def _terminal_health(detail: IncidentDetail, now: datetime) -> Markup | None:
    if detail.incident.kind is IncidentKind.FLEET:
        return None
    if detail.terminal is None:
        body: Markup = element("p", "This terminal has not reported yet.")
    else:
        head = element(
            "thead", element("tr", *(element("th", name, scope="col") for name in TERMINAL_COLUMNS))
        )
        body = element(
            "table", head, element("tbody", terminal_row(detail.terminal, now)), class_="fleet"
        )
    return element("section", element("h2", "Terminal now"), body)


def _timeline_entries(detail: IncidentDetail) -> list[tuple[datetime, Markup]]:
    record = detail.incident
    entries: list[tuple[datetime, Markup]] = [
        (record.opened_at, concat(["Opened (", record.occurrences, " occurrences so far)"]))
    ]
    if record.reopen_count:
        entries.append((record.opened_at, concat(["Came back ", record.reopen_count, " time(s)"])))
    if record.acknowledged_at is not None:
        who = record.acknowledged_by or "someone"
        entries.append((record.acknowledged_at, concat(["Acknowledged by ", element("b", who)])))
    for note in detail.notes:
        label = "Note" if note.kind == "note" else note.kind.capitalize()
        entries.append(
            (
                note.ts,
                concat([label, " by ", element("b", note.author), ": ", element("q", note.text)]),
            )
        )
    for run in detail.runs:
        outcome = run.state.value.replace("_", " ")
        verdict = concat([": ", run.verdict]) if run.verdict else None
        text = concat(
            [
                "Playbook ",
                element("code", run.playbook),
                " started by ",
                element("b", run.started_by),
                " - ",
                element("strong", outcome),
                verdict,
            ]
        )
        entries.append((run.started_at, text))
    if record.resolved_at is not None:
        how = concat([": ", element("q", record.resolution)]) if record.resolution else None
        who = record.resolved_by or "someone"
        entries.append((record.resolved_at, concat(["Resolved by ", element("b", who), how])))
    return sorted(entries, key=lambda entry: entry[0])


def _timeline(detail: IncidentDetail) -> Markup:
    items = (
        element(
            "li",
            element("time", ts.strftime("%Y-%m-%d %H:%M:%S UTC"), datetime=ts.isoformat()),
            " ",
            text,
        )
        for ts, text in _timeline_entries(detail)
    )
    return element("section", element("h2", "Timeline"), element("ol", *items, class_="timeline"))


def _children(detail: IncidentDetail, now: datetime) -> Markup | None:
    if detail.incident.kind is not IncidentKind.FLEET:
        return None
    head = element(
        "thead", element("tr", *(element("th", name, scope="col") for name in LIST_COLUMNS))
    )
    if detail.children:
        rows = concat(incident_row(child, None, now) for child in detail.children)
    else:
        rows = element("tr", element("td", "No terminal is linked.", colspan=len(LIST_COLUMNS)))
    return element(
        "section",
        element("h2", "Terminals affected (", len(detail.children), ")"),
        element("table", head, element("tbody", rows), class_="fleet incidents"),
    )


def _form(action: str, token: str, *fields: object, button: str, name: str) -> Markup:
    return element(
        "form",
        element("input", type="hidden", name=CSRF_FIELD, value=token),
        *fields,
        element("button", button, type="submit"),
        method="post",
        action=action,
        class_=f"action {name}",
    )


def _actions(record: IncidentRecord, options: ActionOptions) -> Markup | None:
    if not options.can_act:
        return None
    base = incident_path(record.id)
    token = options.csrf_token
    forms: list[Markup] = []
    if record.state is IncidentState.OPEN:
        forms.append(_form(f"{base}/ack", token, button="Acknowledge", name="ack"))
    if options.playbooks and record.terminal_id and record.state is not IncidentState.RESOLVED:
        select = element(
            "select",
            *(element("option", title, value=name) for name, title in options.playbooks),
            name="playbook",
        )
        label = element("label", "Playbook ", select)
        forms.append(_form(f"{base}/playbooks", token, label, button="Run playbook", name="run"))
    note = element(
        "label", "Note ", element("textarea", name="text", rows=2, maxlength=4000, required=True)
    )
    forms.append(_form(f"{base}/notes", token, note, button="Add note", name="note"))
    if record.state is not IncidentState.RESOLVED:
        how = element(
            "label",
            "How it was fixed ",
            element("textarea", name="resolution", rows=2, maxlength=4000),
        )
        forms.append(_form(f"{base}/resolve", token, how, button="Resolve", name="resolve"))
    return element("section", element("h2", "Actions"), *forms, class_="actions")


def incident_detail_body(detail: IncidentDetail, options: ActionOptions, now: datetime) -> Markup:
    """The detail page's content: what, why, what to do, the terminal, actions, history."""
    record = detail.incident
    remedy = (
        element("ol", *(element("li", step) for step in record.remedy), class_="remedy")
        if record.remedy
        else element("p", "The rule gives no steps.")
    )
    return concat(
        [
            element("p", element("a", "All incidents", href=INCIDENTS_PATH), class_="back"),
            element("h1", severity_badge(record.severity), " ", record.title),
            _facts(record, now),
            element("section", element("h2", "Probable cause"), element("p", record.cause)),
            element("section", element("h2", "What to do"), remedy),
            _escalation(record),
            _actions(record, options),
            _terminal_health(detail, now),
            _children(detail, now),
            _timeline(detail),
        ]
    )
