"""A report as CSV or as an XLSX workbook, with English keys as the column headers.

CSV through the standard library; XLSX through openpyxl (see docs/reports.md for why
that library). Both hold exactly the rows of the JSON answer: a spreadsheet opened from
either shows the same figures as the page.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from openpyxl import Workbook  # type: ignore[import-untyped]

from posfleet.reports.models import ReportBase


class ExportFormat(StrEnum):
    """The formats a report downloads in, besides JSON."""

    CSV = "csv"
    XLSX = "xlsx"

    @property
    def media_type(self) -> str:
        """The Content-Type of a download in this format."""
        return MEDIA_TYPES[self]


MEDIA_TYPES = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


def columns(report: ReportBase) -> list[str]:
    """The column keys of ``report``'s rows, in order."""
    return list(report.row_model.model_fields)


def _rows(report: ReportBase) -> list[list[Any]]:
    keys = columns(report)
    return [[getattr(row, key) for key in keys] for row in report.row_list()]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def to_csv(report: ReportBase) -> str:
    """The report's rows as CSV text, the header line first."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns(report))
    for row in _rows(report):
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue()


def _xlsx_cell(value: Any) -> Any:
    if isinstance(value, datetime):
        # A spreadsheet cell holds no time zone: the times are UTC, as the header says.
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def to_xlsx(report: ReportBase) -> bytes:
    """The report as an XLSX workbook: its rows on the first sheet, its period on a second."""
    book = Workbook(write_only=True)
    sheet = book.create_sheet(report.name[:31])
    sheet.append(columns(report))
    for row in _rows(report):
        sheet.append([_xlsx_cell(value) for value in row])
    about = book.create_sheet("period")
    about.append(["report", report.name])
    about.append(["since_utc", _xlsx_cell(report.since)])
    about.append(["until_utc", _xlsx_cell(report.until)])
    about.append(["generated_at_utc", _xlsx_cell(report.generated_at)])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def export(report: ReportBase, fmt: ExportFormat) -> bytes:
    """The report in ``fmt``, as bytes (CSV in UTF-8)."""
    if fmt is ExportFormat.CSV:
        return to_csv(report).encode("utf-8")
    return to_xlsx(report)


def file_name(report: ReportBase, fmt: ExportFormat) -> str:
    """``top-problems_2026-03-01_2026-03-31.csv``: the report and its period's days."""
    last = report.until.astimezone(UTC)
    if last.time() == time(0):
        last -= timedelta(days=1)  # an end at midnight names the day before it
    return f"{report.name}_{report.since.astimezone(UTC):%Y-%m-%d}_{last:%Y-%m-%d}.{fmt.value}"
