"""What each report answers: its rows as pydantic models, one model per report.

The models are the single shape of a report: the API returns them, the CSV and XLSX
writers take their field names as the column keys (English, machine-readable) and the
pages word those keys in the reader's language.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

import pydantic


class ReportBase(pydantic.BaseModel):
    """What every report says about itself."""

    model_config = pydantic.ConfigDict(frozen=True)

    name: ClassVar[str]
    row_model: ClassVar[type[pydantic.BaseModel]]

    since: datetime
    """Start of the period (incidents opened at or after it)."""
    until: datetime
    """End of the period (exclusive)."""
    generated_at: datetime

    def row_list(self) -> list[pydantic.BaseModel]:
        """The report's rows, in order."""
        rows: list[pydantic.BaseModel] = getattr(self, "rows")  # noqa: B009 (each subclass)
        return rows


# ---- top problems -------------------------------------------------------------------


class TopProblemRow(pydantic.BaseModel):
    """How many incidents one rule, model, firmware, merchant or site had."""

    model_config = pydantic.ConfigDict(frozen=True)

    dimension: str
    """``rule``, ``model``, ``firmware``, ``merchant`` or ``site``."""
    key: str | None
    """The rule id, model, firmware version, merchant or site; null when not known."""
    incidents: int


class TopProblemsReport(ReportBase):
    """The most frequent causes of incidents, by each dimension, most first."""

    name: ClassVar[str] = "top-problems"
    row_model: ClassVar[type[pydantic.BaseModel]] = TopProblemRow

    top: int
    """At most this many rows per dimension."""
    total: int
    """Terminal incidents opened in the period."""
    rows: list[TopProblemRow]


# ---- response times -----------------------------------------------------------------


class ResponseTimeRow(pydantic.BaseModel):
    """Mean times to acknowledge and to resolve over one severity's or assignee's incidents."""

    model_config = pydantic.ConfigDict(frozen=True)

    group: str
    """``all``, ``severity`` or ``assignee``."""
    key: str | None
    """The severity or the assignee (null: unassigned); null on the ``all`` row."""
    incidents: int
    acknowledged: int
    resolved: int
    mtta_s: float | None
    """Mean seconds from opening to acknowledgement, over the acknowledged ones."""
    mttr_s: float | None
    """Mean seconds from opening to resolution, over the resolved ones."""


class ResponseTimesReport(ReportBase):
    """MTTA and MTTR overall, per severity and per assignee."""

    name: ClassVar[str] = "response-times"
    row_model: ClassVar[type[pydantic.BaseModel]] = ResponseTimeRow

    rows: list[ResponseTimeRow]


# ---- weekly trend -------------------------------------------------------------------


class WeekRow(pydantic.BaseModel):
    """Incidents opened in one ISO week (Monday to Sunday, UTC)."""

    model_config = pydantic.ConfigDict(frozen=True)

    week_start: date
    incidents: int


class WeeklyTrendReport(ReportBase):
    """Incidents opened per week over the period, oldest first, empty weeks included."""

    name: ClassVar[str] = "weekly-trend"
    row_model: ClassVar[type[pydantic.BaseModel]] = WeekRow

    rows: list[WeekRow]


# ---- repeated faults ----------------------------------------------------------------


class RepeatedFaultRow(pydantic.BaseModel):
    """A terminal whose same component failed again and again: a candidate for a swap."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    component: str
    incidents: int
    rules: int
    """How many different rules fired among them."""
    first_opened_at: datetime
    last_opened_at: datetime
    model: str | None
    merchant_id: str | None
    site_id: str | None


class RepeatedFaultsReport(ReportBase):
    """Terminals with at least ``min_incidents`` incidents of one component in the period."""

    name: ClassVar[str] = "repeated-faults"
    row_model: ClassVar[type[pydantic.BaseModel]] = RepeatedFaultRow

    min_incidents: int
    limit: int
    rows: list[RepeatedFaultRow]


# ---- predictive maintenance ---------------------------------------------------------


class WearRow(pydantic.BaseModel):
    """A part of one terminal near (or past) the wear limit its maintenance rule reads."""

    model_config = pydantic.ConfigDict(frozen=True)

    terminal_id: str
    part: str
    """The rule's component: ``printer``, ``card_reader`` or ``battery``."""
    rule_id: str
    counter: str
    """The health field read, e.g. ``printer.lines_printed``."""
    value: float
    limit: float
    """Where the rule raises its "maintenance due" incident."""
    wear_percent: float
    """How much of the part's life is used, 100 at the limit."""
    model: str | None
    merchant_id: str | None
    site_id: str | None


class WearLimit(pydantic.BaseModel):
    """One wear limit as a maintenance rule states it."""

    model_config = pydantic.ConfigDict(frozen=True)

    rule_id: str
    part: str
    counter: str
    comparison: str
    """``>=``, ``>``, ``<`` or ``<=``, as the rule writes it."""
    limit: float


class MaintenanceReport(ReportBase):
    """Parts whose wear is at least ``near_percent`` of their limit, most worn first.

    The counters are the terminals' latest reports, not the period's: the period only
    names the report.
    """

    name: ClassVar[str] = "maintenance"
    row_model: ClassVar[type[pydantic.BaseModel]] = WearRow

    near_percent: float
    limit: int
    limits: list[WearLimit]
    rows: list[WearRow]
