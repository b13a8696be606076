"""Reports for helpdesk leads and ops: top problems, response times, trends, swap and
wear lists, as JSON, CSV and XLSX; and the scheduled summary sent to the webhooks.

What other packages may use is named here.
"""

from __future__ import annotations

from posfleet.reports.catalogue import (
    REPORT_NAMES,
    REPORTS,
    ReportOptions,
    build_report,
    report_model,
)
from posfleet.reports.errors import PeriodError, ReportsError, UnknownReportError
from posfleet.reports.exports import ExportFormat, export, file_name, to_csv, to_xlsx
from posfleet.reports.models import (
    MaintenanceReport,
    RepeatedFaultsReport,
    ReportBase,
    ResponseTimesReport,
    TopProblemsReport,
    WeeklyTrendReport,
)
from posfleet.reports.period import MAX_SPAN, Preset, ReportPeriod, parse_period
from posfleet.reports.summary_loop import ReportSummaries, ReportSummary, build_summary
from posfleet.reports.summary_schedule import SummaryCadence, SummaryPeriod, SummarySchedule

__all__ = [
    "MAX_SPAN",
    "REPORTS",
    "REPORT_NAMES",
    "ExportFormat",
    "MaintenanceReport",
    "PeriodError",
    "Preset",
    "RepeatedFaultsReport",
    "ReportBase",
    "ReportOptions",
    "ReportPeriod",
    "ReportSummaries",
    "ReportSummary",
    "ReportsError",
    "ResponseTimesReport",
    "SummaryCadence",
    "SummaryPeriod",
    "SummarySchedule",
    "TopProblemsReport",
    "UnknownReportError",
    "WeeklyTrendReport",
    "build_report",
    "build_summary",
    "export",
    "file_name",
    "parse_period",
    "report_model",
    "to_csv",
    "to_xlsx",
]
