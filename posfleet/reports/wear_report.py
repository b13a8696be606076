"""Predictive maintenance: parts near the wear limits that the maintenance rules read.

The limits are not kept here: they are read from the ``maintenance.*`` rules in force
(``printer.lines_printed >= 2000000`` and the like), so the report and the "maintenance
due" incidents can never disagree. A part's wear is the share of its life used: the
counter over its limit, or, for a health percentage that falls towards its limit,
the share of the way from 100 down to it. The counters are each terminal's newest
report, looked up by primary key from the terminal row, and the wear is computed and
filtered in the database: one pass over the fleet, at most ``limit`` rows back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.diagnostics.rule_model import Rule
from posfleet.reports.models import MaintenanceReport, WearLimit, WearRow
from posfleet.reports.period import ReportPeriod
from posfleet.store.schema import health_samples, terminals

log = logging.getLogger(__name__)

MAINTENANCE_PREFIX = "maintenance."
"""The rules whose conditions are wear limits."""

DEFAULT_NEAR_PERCENT = 80.0
"""A part whose wear reached this share of its limit is listed."""

_COMPARISON = re.compile(
    r"\b([a-z_][a-z0-9_]*)\.([a-z_][a-z0-9_]*)\s*(>=|>|<=|<)\s*(\d+(?:\.\d+)?)\b"
)
_RISING = (">=", ">")


def wear_limits(rules: Iterable[Rule]) -> list[WearLimit]:
    """Every ``counter <op> number`` the maintenance rules' conditions test, in rule order.

    A falling limit (``<``) is read only on a percentage (``..._percent``), whose new
    value is 100; any other comparison is left out, with a log line.
    """
    found = []
    for rule in rules:
        if not rule.id.startswith(MAINTENANCE_PREFIX) or rule.when is None:
            continue
        for group, field, op, number in _COMPARISON.findall(rule.when.source):
            limit = float(number)
            falling_percent = op not in _RISING and field.endswith("_percent") and limit < 100
            if op not in _RISING and not falling_percent:
                log.info("wear report: %s's %s.%s %s %s is not a wear limit", rule.id,
                         group, field, op, number)  # fmt: skip
                continue
            if op in _RISING and limit <= 0:
                continue
            found.append(
                WearLimit(
                    rule_id=rule.id,
                    part=rule.component.value,
                    counter=f"{group}.{field}",
                    comparison=op,
                    limit=limit,
                )
            )
    return found


def _wear_expr(value: sa.ColumnElement[Any], limit: WearLimit) -> sa.ColumnElement[Any]:
    if limit.comparison in _RISING:
        return value * (100.0 / limit.limit)
    return (100.0 - value) * (100.0 / (100.0 - limit.limit))


async def maintenance(
    conn: AsyncConnection,
    period: ReportPeriod,
    rules: Iterable[Rule],
    *,
    near_percent: float = DEFAULT_NEAR_PERCENT,
    limit: int = 100,
    now: datetime,
) -> MaintenanceReport:
    """The parts at ``near_percent`` of their wear limit or beyond, most worn first."""
    limits = wear_limits(rules)
    rows: list[WearRow] = []
    if limits:
        rows = await _worn_parts(conn, limits, near_percent, limit)
    return MaintenanceReport(
        since=period.since,
        until=period.until,
        generated_at=now,
        near_percent=near_percent,
        limit=limit,
        limits=limits,
        rows=rows,
    )


async def _worn_parts(
    conn: AsyncConnection, limits: list[WearLimit], near_percent: float, limit: int
) -> list[WearRow]:
    t, h = terminals.c, health_samples.c
    counters = sorted({w.counter for w in limits})
    columns = {name: f"c{n}" for n, name in enumerate(counters)}
    latest = (
        sa.select(
            t.terminal_id,
            t.model,
            t.merchant_id,
            t.site_id,
            *(
                h.metrics[tuple(name.split("."))].as_float().label(columns[name])
                for name in counters
            ),
        )
        .select_from(
            terminals.join(
                health_samples,
                sa.and_(h.terminal_id == t.terminal_id, h.seq == t.health_seq),
            )
        )
        .cte("latest_counters")
        # Read the fleet's newest reports once, however many limits look at them.
        .prefix_with("MATERIALIZED")
    )
    parts = []
    for wear in limits:
        value = latest.c[columns[wear.counter]]
        worn = _wear_expr(value, wear)
        parts.append(
            sa.select(
                latest.c.terminal_id,
                sa.literal(wear.part).label("part"),
                sa.literal(wear.rule_id).label("rule_id"),
                sa.literal(wear.counter).label("counter"),
                value.label("value"),
                sa.literal(wear.limit).label("limit_value"),
                worn.label("wear"),
                latest.c.model,
                latest.c.merchant_id,
                latest.c.site_id,
            ).where(value.is_not(None), worn >= near_percent)
        )
    every = sa.union_all(*parts).subquery("worn")
    query = (
        sa.select(every)
        .order_by(every.c.wear.desc(), every.c.terminal_id, every.c.counter)
        .limit(limit)
    )
    return [
        WearRow(
            terminal_id=r.terminal_id,
            part=r.part,
            rule_id=r.rule_id,
            counter=r.counter,
            value=float(r.value),
            limit=float(r.limit_value),
            wear_percent=round(float(r.wear), 1),
            model=r.model,
            merchant_id=r.merchant_id,
            site_id=r.site_id,
        )
        for r in await conn.execute(query)
    ]
