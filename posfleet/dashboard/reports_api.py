"""The reports under ``/api/v1/reports/<name>``: JSON, or CSV / XLSX on request.

``?format=csv|xlsx|json`` chooses the format; without it, an ``Accept`` of ``text/csv``
or the XLSX media type does, and JSON is the default. The period is ``from``/``to``
(dates or ISO 8601 times) or a ``preset`` (7d, 30d, 90d); a bad one is a 400 problem
naming the parameter. Reading a report needs the viewer role. The reports page reads
its reports through :func:`report_from_request` too, so both show the same figures.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Annotated, Literal

import pydantic
from aiohttp import web

from posfleet.contract import utcnow
from posfleet.dashboard.access import Handler, requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.incidents_page import RULES_IN_FORCE_KEY
from posfleet.dashboard.json_bodies import json_model
from posfleet.dashboard.query_params import choice_param, int_param, refuse_unknown, single
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.rule_model import Rule
from posfleet.reports import (
    REPORTS,
    ExportFormat,
    PeriodError,
    ReportBase,
    ReportOptions,
    build_report,
    export,
    file_name,
    parse_period,
)
from posfleet.reports.exports import MEDIA_TYPES
from posfleet.store.accounts import Role

API_PATH = "/api/v1/reports"
PERIOD_PARAMETERS = ("from", "to", "preset")
OPTION_PARAMETERS = ("top", "min_incidents", "near_percent", "limit")
PARAMETERS = (*PERIOD_PARAMETERS, *OPTION_PARAMETERS, "format")
FORMATS = ("json", *(f.value for f in ExportFormat))
MAX_ROWS = 1000


class ReportQuery(pydantic.BaseModel):
    """The query parameters every report takes (each report reads its own options)."""

    model_config = pydantic.ConfigDict(extra="forbid", populate_by_name=True)

    from_: str | None = pydantic.Field(
        None, alias="from", description="first day (2026-03-01) or time (ISO 8601) of the period"
    )
    to: str | None = pydantic.Field(
        None, description="last day (inclusive) or time (exclusive) of the period"
    )
    preset: Literal["7d", "30d", "90d"] | None = pydantic.Field(
        None, description="the period ending now, instead of from/to (default 30d)"
    )
    format: Literal["json", "csv", "xlsx"] | None = pydantic.Field(
        None, description="json (default), csv or xlsx; an Accept header chooses otherwise"
    )
    top: Annotated[int, pydantic.Field(ge=1, le=100)] | None = pydantic.Field(
        None, description="top-problems: rows per dimension (10)"
    )
    min_incidents: Annotated[int, pydantic.Field(ge=2, le=1000)] | None = pydantic.Field(
        None, description="repeated-faults: incidents of one component that count (3)"
    )
    near_percent: Annotated[int, pydantic.Field(ge=1, le=1000)] | None = pydantic.Field(
        None, description="maintenance: list parts at this share of their wear limit (80)"
    )
    limit: Annotated[int, pydantic.Field(ge=1, le=MAX_ROWS)] | None = pydantic.Field(
        None, description="repeated-faults and maintenance: at most this many rows (100)"
    )


@functools.cache
def _builtin_rules() -> tuple[Rule, ...]:
    return tuple(load_builtin_rules())


def rules_in_force(app: web.Application) -> Sequence[Rule]:
    """The running diagnostics' rules (their wear limits), else the shipped rule pack."""
    running = app.get(RULES_IN_FORCE_KEY)
    if running is not None and running.rules:
        return running.rules
    return _builtin_rules()


def report_options(request: web.Request) -> ReportOptions:
    """The report options of the request's query, checked (a 400 naming a bad one)."""
    query = request.query
    defaults = ReportOptions()
    return ReportOptions(
        top=int_param(query, "top", defaults.top, 1, 100),
        min_incidents=int_param(query, "min_incidents", defaults.min_incidents, 2, 1000),
        near_percent=float(int_param(query, "near_percent", int(defaults.near_percent), 1, 1000)),
        limit=int_param(query, "limit", defaults.limit, 1, MAX_ROWS),
    )


async def report_from_request(request: web.Request, name: str) -> ReportBase:
    """The report ``name`` over the period and options the request's query gives."""
    query = request.query
    try:
        period = parse_period(
            single(query, "from"), single(query, "to"), single(query, "preset"), now=utcnow()
        )
    except PeriodError as exc:
        raise InvalidParameterError(exc.parameter, exc.message) from None
    options = report_options(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        return await build_report(
            conn,
            name,
            period,
            rules=rules_in_force(request.app),
            options=options,
            now=utcnow(),
        )


def chosen_format(request: web.Request) -> ExportFormat | None:
    """The download format asked for; None for JSON."""
    raw = choice_param(request.query, "format", FORMATS)
    if raw is None:
        accept = request.headers.get("Accept", "")
        for fmt, media_type in MEDIA_TYPES.items():
            if media_type in accept:
                return fmt
        return None
    return None if raw == "json" else ExportFormat(raw)


def download(report: ReportBase, fmt: ExportFormat) -> web.Response:
    """The report as a file to save."""
    return web.Response(
        body=export(report, fmt),
        content_type=fmt.media_type,
        charset="utf-8" if fmt is ExportFormat.CSV else None,
        headers={"Content-Disposition": f'attachment; filename="{file_name(report, fmt)}"'},
    )


def _endpoint(name: str, model: type[ReportBase]) -> Handler:
    @api_operation(
        (model.__doc__ or name).strip().splitlines()[0],
        tag="reports",
        response=model,
        query=ReportQuery,
        content_types={media: f"the report's rows as {fmt.value.upper()}"
                       for fmt, media in MEDIA_TYPES.items()},
    )  # fmt: skip
    @requires(Role.VIEWER)
    async def endpoint(request: web.Request) -> web.Response:
        refuse_unknown(request.query, PARAMETERS)
        fmt = chosen_format(request)
        report = await report_from_request(request, name)
        return json_model(report) if fmt is None else download(report, fmt)

    endpoint.__name__ = endpoint.__qualname__ = f"report_{name.replace('-', '_')}_endpoint"
    endpoint.__doc__ = f"``GET {API_PATH}/{name}``: {model.__doc__}"
    return endpoint


def add_routes(app: web.Application) -> None:
    """Register one route per report."""
    for name, (model, _builder) in REPORTS.items():
        app.router.add_get(f"{API_PATH}/{name}", _endpoint(name, model))
