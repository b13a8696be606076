"""The reports pages: top problems, response times, weekly trend, swap and wear lists.

``/reports`` lists the reports; ``/reports/<name>`` shows one over the chosen period as
charts (drawn by ``reports.js`` with Chart.js when it is installed), each chart's
figures as a table beside it, and the whole report as a table; ``/reports/<name>/export``
downloads it as CSV or XLSX (English column keys). The figures are the API's
(:func:`~posfleet.dashboard.reports_api.report_from_request`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from posfleet.dashboard.access import requires
from posfleet.dashboard.errors import NotFoundError
from posfleet.dashboard.query_params import choice_param, refuse_unknown, single
from posfleet.dashboard.reports_api import (
    OPTION_PARAMETERS,
    PERIOD_PARAMETERS,
    download,
    report_from_request,
)
from posfleet.dashboard.templating import _, duration, render_page
from posfleet.dashboard.terminal_charts import CHART_LIBRARY_SCRIPT, chart_library_present
from posfleet.i18n import format_number, format_timestamp
from posfleet.reports import REPORT_NAMES, ExportFormat, Preset, ReportBase
from posfleet.reports.models import (
    MaintenanceReport,
    RepeatedFaultsReport,
    ResponseTimesReport,
    TopProblemsReport,
    WeeklyTrendReport,
)
from posfleet.reports.period import DEFAULT_PRESET
from posfleet.store.accounts import Role

PAGE_PATH = "/reports"
REPORTS_SCRIPT = "reports.js"
CHART_ROWS = 20
"""A chart shows at most this many bars; the table below it has them all."""

TITLES = {
    "top-problems": (
        _("Top problems"),
        _("Which rules, models, firmware versions, merchants and sites had the most incidents."),
    ),
    "response-times": (
        _("Response times"),
        _("Mean time to acknowledge and to resolve, per severity and per assignee."),
    ),
    "weekly-trend": (_("Incident trend"), _("Incidents opened per week.")),
    "repeated-faults": (
        _("Repeated faults"),
        _("Terminals whose same component failed again and again: candidates for a swap."),
    ),
    "maintenance": (
        _("Predictive maintenance"),
        _("Print heads, card readers and batteries near the wear limits of the maintenance rules."),
    ),
}

COLUMNS = {
    "dimension": _("By"),
    "key": _("Which"),
    "incidents": _("Incidents"),
    "group": _("Group"),
    "acknowledged": _("Acknowledged"),
    "resolved": _("Resolved"),
    "mtta_s": _("Mean time to acknowledge"),
    "mttr_s": _("Mean time to resolve"),
    "week_start": _("Week of"),
    "terminal_id": _("Terminal"),
    "component": _("Component"),
    "rules": _("Rules"),
    "first_opened_at": _("First"),
    "last_opened_at": _("Last"),
    "model": _("Model"),
    "merchant_id": _("Merchant"),
    "site_id": _("Site"),
    "part": _("Part"),
    "rule_id": _("Rule"),
    "counter": _("Counter"),
    "value": _("Value"),
    "limit": _("Limit"),
    "wear_percent": _("Wear (%)"),
}

WORDS = {
    "rule": _("rule"),
    "model": _("model"),
    "firmware": _("firmware"),
    "merchant": _("merchant"),
    "site": _("site"),
    "all": _("all incidents"),
    "severity": _("severity"),
    "assignee": _("assignee"),
    "printer": _("printer"),
    "card_reader": _("card reader"),
    "battery": _("battery"),
    "network": _("network"),
    "critical": _("critical"),
    "error": _("error"),
    "warning": _("warning"),
    "info": _("info"),
}
"""Values of the key columns that are words, not names."""

PRESETS = ((Preset.WEEK, _("7 days")), (Preset.MONTH, _("30 days")), (Preset.QUARTER, _("90 days")))


@dataclass(frozen=True)
class ChartView:
    """One chart: its labels, one or more series, and the same figures as table rows."""

    title: str
    kind: str
    """``bar`` or ``line``."""
    unit: str
    labels: list[str]
    series: list[tuple[str, list[float | None]]] = field(default_factory=list)

    @property
    def table(self) -> list[tuple[str, list[str]]]:
        """``(label, cells)`` per point, the series' figures as the page shows them."""
        return [
            (label, [_figure(values[i]) for _name, values in self.series])
            for i, label in enumerate(self.labels)
        ]

    @property
    def datasets(self) -> list[dict[str, Any]]:
        """The series as the script reads them."""
        return [{"label": name, "values": values} for name, values in self.series]


def _figure(value: float | None) -> str:
    """A figure in the reader's number format, with a decimal only where it has one."""
    if value is None:
        return "-"
    return format_number(value, 0 if float(value).is_integer() else 1)


def _label(value: str | None) -> str:
    if value is None:
        return _("(unknown)")
    return str(WORDS.get(value, value))


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _top_charts(report: TopProblemsReport) -> list[ChartView]:
    charts = []
    for dimension, title in (
        ("rule", _("Incidents by rule")),
        ("model", _("Incidents by model")),
        ("firmware", _("Incidents by firmware version")),
        ("merchant", _("Incidents by merchant")),
        ("site", _("Incidents by site")),
    ):
        rows = [r for r in report.rows if r.dimension == dimension][:CHART_ROWS]
        charts.append(
            ChartView(
                str(title), "bar", str(_("incidents")), [_label(r.key) for r in rows],
                [(str(_("Incidents")), [float(r.incidents) for r in rows])],
            )
        )  # fmt: skip
    return charts


def _times_charts(report: ResponseTimesReport) -> list[ChartView]:
    charts = []
    for group, title in (
        ("severity", _("Response times per severity")),
        ("assignee", _("Response times per assignee")),
    ):
        rows = [r for r in report.rows if r.group == group][:CHART_ROWS]
        keys = [
            _label(r.key) if r.key is not None or group == "severity" else str(_("unassigned"))
            for r in rows
        ]
        charts.append(
            ChartView(
                str(title), "bar", str(_("minutes")), keys,
                [
                    (str(_("Mean time to acknowledge")), [_minutes(r.mtta_s) for r in rows]),
                    (str(_("Mean time to resolve")), [_minutes(r.mttr_s) for r in rows]),
                ],
            )
        )  # fmt: skip
    return charts


def _trend_charts(report: WeeklyTrendReport) -> list[ChartView]:
    return [
        ChartView(
            str(_("Incidents per week")), "line", str(_("incidents")),
            [r.week_start.isoformat() for r in report.rows],
            [(str(_("Incidents")), [float(r.incidents) for r in report.rows])],
        )
    ]  # fmt: skip


def _repeat_charts(report: RepeatedFaultsReport) -> list[ChartView]:
    rows = report.rows[:CHART_ROWS]
    return [
        ChartView(
            str(_("Incidents of one component per terminal")), "bar", str(_("incidents")),
            [f"{r.terminal_id} · {_label(r.component)}" for r in rows],
            [(str(_("Incidents")), [float(r.incidents) for r in rows])],
        )
    ]  # fmt: skip


def _wear_charts(report: MaintenanceReport) -> list[ChartView]:
    rows = report.rows[:CHART_ROWS]
    return [
        ChartView(
            str(_("Wear, share of the limit")), "bar", "%",
            [f"{r.terminal_id} · {_label(r.part)}" for r in rows],
            [(str(_("Wear (%)")), [r.wear_percent for r in rows])],
        )
    ]  # fmt: skip


_CHARTS: dict[type[ReportBase], Callable[[Any], list[ChartView]]] = {
    TopProblemsReport: _top_charts,
    ResponseTimesReport: _times_charts,
    WeeklyTrendReport: _trend_charts,
    RepeatedFaultsReport: _repeat_charts,
    MaintenanceReport: _wear_charts,
}


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key.endswith("_s") and isinstance(value, float):
        return duration(timedelta(seconds=value))
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _figure(value)
    if key in ("dimension", "group", "part", "component"):
        return _label(value)
    return str(value)


def table_view(report: ReportBase) -> tuple[list[str], list[list[str]]]:
    """The report's column headings (in the reader's language) and its rows as cells."""
    keys = list(report.row_model.model_fields)
    headings = [str(COLUMNS.get(key, key)) for key in keys]
    rows = [[_cell(key, getattr(row, key)) for key in keys] for row in report.row_list()]
    return headings, rows


def _kept_query(request: web.Request, names: Sequence[str]) -> dict[str, str]:
    kept = {}
    for name in names:
        value = single(request.query, name)
        if value is not None:
            kept[name] = value
    return kept


def _chosen_preset(request: web.Request) -> str | None:
    """The preset the page shows: the one asked for, the default when no period was given."""
    given = _kept_query(request, PERIOD_PARAMETERS)
    if not given:
        return DEFAULT_PRESET.value
    return given.get("preset")


def _check_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in REPORT_NAMES:
        raise NotFoundError(_("There is no report called %(name)s.") % {"name": name[:40]})
    return name


@requires(Role.VIEWER)
async def reports_index(request: web.Request) -> web.Response:
    """``GET /reports``: every report, with a link keeping the chosen period."""
    refuse_unknown(request.query, PERIOD_PARAMETERS)
    query = urlencode(_kept_query(request, PERIOD_PARAMETERS))
    entries = [(name, *TITLES[name]) for name in REPORT_NAMES]
    return render_page(request, "reports.html", {"entries": entries, "query": query})


@requires(Role.VIEWER)
async def report_page(request: web.Request) -> web.Response:
    """``GET /reports/<name>?from=&to=&preset=``: one report as charts and tables."""
    name = _check_name(request)
    refuse_unknown(request.query, (*PERIOD_PARAMETERS, *OPTION_PARAMETERS))
    report = await report_from_request(request, name)
    headings, rows = table_view(report)
    kept = _kept_query(request, (*PERIOD_PARAMETERS, *OPTION_PARAMETERS))
    chart_library = chart_library_present()
    title, description = TITLES[name]
    return render_page(
        request,
        "reports_report.html",
        {
            "name": name,
            "title": title,
            "description": description,
            "report": report,
            "last_day": (report.until - timedelta(microseconds=1)).date(),
            "charts": _CHARTS[type(report)](report),
            "headings": headings,
            "rows": rows,
            "presets": PRESETS,
            "chosen_preset": _chosen_preset(request),
            "query": urlencode(kept),
            "formats": [f.value for f in ExportFormat],
            "chart_library": chart_library,
        },
        scripts=[CHART_LIBRARY_SCRIPT, REPORTS_SCRIPT] if chart_library else [],
    )


@requires(Role.VIEWER)
async def report_export(request: web.Request) -> web.Response:
    """``GET /reports/<name>/export?format=csv|xlsx``: the report as a file."""
    name = _check_name(request)
    refuse_unknown(request.query, (*PERIOD_PARAMETERS, *OPTION_PARAMETERS, "format"))
    fmt = choice_param(request.query, "format", [f.value for f in ExportFormat])
    report = await report_from_request(request, name)
    return download(report, ExportFormat(fmt or ExportFormat.CSV.value))


def add_routes(app: web.Application) -> None:
    """Register the reports pages and their downloads."""
    app.router.add_get(PAGE_PATH, reports_index)
    app.router.add_get(PAGE_PATH + "/{name}", report_page)
    app.router.add_get(PAGE_PATH + "/{name}/export", report_export)
