"""What the terminal page's own panels show, worked out from records (pure, no I/O).

The templates (``templates/panel_*.html``) only lay out what these functions return; the
words are marked for translation here or in the templates. Values reach the page as text
through autoescaping templates (ids, merchant and site names come from the terminals).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from posfleet.dashboard.templating import _
from posfleet.dashboard.terminal_charts import ChartPeriod, TerminalCharts
from posfleet.firmware.action_records import ActionRecord
from posfleet.firmware.action_states import ActionState
from posfleet.store.incidents import IncidentRecord, IncidentState
from posfleet.store.terminals import TerminalRecord

UNRESOLVED_STATES = (IncidentState.OPEN, IncidentState.ACKNOWLEDGED)
"""The states the page lists as open."""
SEVERITY_KIND = {"critical": "bad", "error": "bad", "warning": "warn", "info": "muted"}
"""The badge colour of each incident severity."""
INCIDENT_STATE_KIND = {"open": "bad", "acknowledged": "warn", "resolved": "ok"}
HEALTH_KIND = {"ok": "ok", "warning": "warn", "fault": "bad", "unknown": "muted"}
"""The badge colour of each health class."""
_ACTION_KIND = {
    ActionState.SUCCEEDED: "ok",
    ActionState.FAILED: "bad",
    ActionState.REJECTED: "bad",
    ActionState.ROLLED_BACK: "bad",
    ActionState.TIMED_OUT: "bad",
    ActionState.CANCELLED: "muted",
}


def offline_reason(code: str | None) -> str | None:
    """Why the centre thinks the terminal is offline, in words."""
    reasons = {
        "lwt": _("the connection dropped (the broker sent its last will)"),
        "heartbeat": _("it stopped reporting (no heartbeat)"),
    }
    return None if code is None else reasons.get(code, code)


@dataclass(frozen=True, slots=True)
class Fact:
    """One label and its value on a facts list; ``code`` draws the value as code."""

    label: str
    value: str
    code: bool = False


def _or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def _named(name: str, identifier: str | None) -> str:
    """``Café Lumière (M1001)``; the id alone when the terminal names nothing."""
    if not identifier:
        return name or "-"
    return f"{name} ({identifier})" if name else identifier


def registry_facts(record: TerminalRecord) -> list[Fact]:
    """What the centre knows about the terminal itself, label by label."""
    interval = record.report_interval_s
    return [
        Fact(_("Merchant"), _named(record.merchant_name, record.merchant_id)),
        Fact(_("Site"), _named(record.site_name, record.site_id)),
        Fact(_("Time zone"), _or_dash(record.timezone)),
        Fact(_("Model"), _or_dash(record.model)),
        Fact(_("Serial number"), _or_dash(record.serial)),
        Fact(_("Hardware revision"), _or_dash(record.hw_revision)),
        Fact(_("Firmware"), _or_dash(record.firmware_version)),
        Fact(_("Agent"), _or_dash(record.agent_version)),
        Fact(_("Capabilities"), ", ".join(record.capabilities) or "-"),
        Fact(_("Reports every"), f"{interval} s" if interval else "-"),
        Fact(_("Boot"), _or_dash(record.boot_id), code=record.boot_id is not None),
        Fact(_("Reports lost"), str(record.seq_gaps)),
        Fact(_("Duplicates received"), str(record.seq_duplicates)),
    ]


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """One incident on the terminal page."""

    record: IncidentRecord
    severity_kind: str
    state_kind: str


def incident_rows(records: Sequence[IncidentRecord]) -> list[IncidentRow]:
    """The incidents as the page's table draws them."""
    return [
        IncidentRow(
            record,
            SEVERITY_KIND.get(record.severity, "muted"),
            INCIDENT_STATE_KIND.get(record.state.value, "muted"),
        )
        for record in records
    ]


@dataclass(frozen=True, slots=True)
class ActionRow:
    """One firmware Action of the terminal."""

    record: ActionRecord
    kind: str
    """Badge colour: ok, bad, muted, or warn while it is still open."""
    label: str


def action_rows(records: Sequence[ActionRecord]) -> list[ActionRow]:
    """The terminal's firmware Actions, newest first, with the colour of their state."""
    return [
        ActionRow(
            record,
            _ACTION_KIND.get(record.state, "warn"),
            record.state.value.replace("_", " "),
        )
        for record in records
    ]


def figure_text(value: float | None) -> str:
    """A chart figure as the table shows it: ``81``, ``12.5``; ``-`` for no figure."""
    return "-" if value is None else f"{value:g}"


@dataclass(frozen=True, slots=True)
class ChartFigure:
    """One chart with its figures in words: the period's lowest, highest and latest."""

    name: str
    label: str
    unit: str
    values: list[float | None]
    lowest: str
    highest: str
    latest: str


@dataclass(frozen=True, slots=True)
class ChartsView:
    """The charts panel: the figures, hour labels, and which period is shown."""

    period: ChartPeriod
    periods: list[tuple[ChartPeriod, str]]
    labels: list[str]
    """One per hour, UTC: ``14:00`` over 24 h, ``06-12 14:00`` over 7 days."""
    figures: list[ChartFigure]
    table: list[tuple[str, list[str]]]
    """The hours with at least one figure, each with its figures as text, newest first."""
    has_data: bool


def _figure(name: str, label: str, unit: str, values: list[float | None]) -> ChartFigure:
    present = [v for v in values if v is not None]
    return ChartFigure(
        name,
        label,
        unit,
        values,
        figure_text(min(present) if present else None),
        figure_text(max(present) if present else None),
        figure_text(present[-1] if present else None),
    )


def _hour_label(hour: datetime, period: ChartPeriod) -> str:
    shown = hour.astimezone(UTC)
    return shown.strftime("%H:00" if period is ChartPeriod.DAY else "%m-%d %H:00")


def charts_view(charts: TerminalCharts) -> ChartsView:
    """The chart set as the panel draws it (canvas data, summaries and the table)."""
    figures = [_figure(s.name, s.label, s.unit, s.values) for s in charts.series]
    labels = [_hour_label(hour, charts.period) for hour in charts.hours]
    table = [
        (label, [figure_text(s.values[i]) for s in charts.series])
        for i, label in enumerate(labels)
        if any(s.values[i] is not None for s in charts.series)
    ]
    table.reverse()
    return ChartsView(
        period=charts.period,
        periods=[(ChartPeriod.DAY, _("24 hours")), (ChartPeriod.WEEK, _("7 days"))],
        labels=labels,
        figures=figures,
        table=table,
        has_data=bool(table),
    )
