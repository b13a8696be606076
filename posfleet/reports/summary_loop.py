"""The scheduled summary: the last day's or week's figures, sent to the configured webhooks.

Every central instance runs :class:`ReportSummaries`; the period's row in
``report_summaries`` decides which one sends (see :mod:`posfleet.reports.summary_claims`),
so a summary goes out once however many instances run. The receivers are the diagnostics
webhooks (:class:`~posfleet.diagnostics.webhooks.WebhookSettings`), with the same
retries and backoff; a summary is a JSON POST ``{"event": "report.summary", ...}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, ClassVar

import aiohttp
import pydantic
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from posfleet.contract import utcnow
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.webhooks import WebhookSettings, post_json
from posfleet.firmware.background_loop import BackgroundLoop
from posfleet.reports.incident_reports import repeated_faults, response_times, top_problems
from posfleet.reports.period import ReportPeriod
from posfleet.reports.summary_claims import claim_period, mark_sent
from posfleet.reports.summary_schedule import SummaryPeriod, SummarySchedule
from posfleet.reports.wear_report import maintenance

log = logging.getLogger(__name__)

SUMMARY_EVENT = "report.summary"
TOP_RULES = 5


class RuleCount(pydantic.BaseModel):
    """A rule and how many incidents it opened."""

    rule_id: str | None
    incidents: int


class ReportSummary(pydantic.BaseModel):
    """What a summary says about its period."""

    model_config = pydantic.ConfigDict(frozen=True)

    cadence: str
    since: datetime
    until: datetime
    incidents: int
    """Terminal incidents opened in the period."""
    unresolved: int
    """Of those, how many are not resolved yet."""
    by_severity: dict[str, int]
    mtta_s: float | None
    mttr_s: float | None
    top_rules: list[RuleCount]
    swap_candidates: int
    """Terminals with repeated faults of one component in the period (at most 100)."""
    worn_parts: int
    """Parts near their wear limit now (at most 100)."""


async def build_summary(
    conn: AsyncConnection, period: SummaryPeriod, rules: Sequence[Rule], *, now: datetime
) -> ReportSummary:
    """The summary of ``period`` from the reports themselves (the same figures as the page)."""
    span = ReportPeriod(since=period.since, until=period.until)
    times = await response_times(conn, span, now=now)
    top = await top_problems(conn, span, top=TOP_RULES, now=now)
    overall = times.rows[0]
    return ReportSummary(
        cadence=period.cadence.value,
        since=period.since,
        until=period.until,
        incidents=overall.incidents,
        unresolved=overall.incidents - overall.resolved,
        by_severity={r.key or "": r.incidents for r in times.rows if r.group == "severity"},
        mtta_s=overall.mtta_s,
        mttr_s=overall.mttr_s,
        top_rules=[
            RuleCount(rule_id=r.key, incidents=r.incidents)
            for r in top.rows
            if r.dimension == "rule"
        ],
        swap_candidates=len((await repeated_faults(conn, span, now=now)).rows),
        worn_parts=len((await maintenance(conn, span, rules, now=now)).rows),
    )


async def deliver(
    http: aiohttp.ClientSession, settings: WebhookSettings, body: dict[str, Any]
) -> int:
    """POST ``body`` to every webhook, retrying as the notifier does; how many took it."""
    delivered = 0
    for url in settings.urls:
        delivery = await post_json(http, settings, url, body, what="the report summary")
        delivered += delivery.delivered
    return delivered


class ReportSummaries(BackgroundLoop):
    """Sends each due summary once across every instance, while the block lasts."""

    task_name: ClassVar[str] = "report-summaries"

    def __init__(
        self,
        engine: AsyncEngine,
        webhooks: WebhookSettings,
        schedule: SummarySchedule,
        *,
        instance: str,
        rules: Callable[[], Sequence[Rule]],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.webhooks = webhooks
        self.schedule = schedule
        self.instance = instance
        self.rules = rules
        self.sent = 0
        self.checks = 0
        """How many times the loop looked whether a summary was due."""
        self._clock = clock

    async def send_due(self) -> ReportSummary | None:
        """Send the due summary if no instance has; the summary sent, or None."""
        now = self._clock()
        period = self.schedule.due(now)
        if period is None or not self.webhooks.urls:
            return None
        async with self.engine.begin() as conn:
            claimed = await claim_period(
                conn, period, instance=self.instance, now=now, lease=self.schedule.claim_lease
            )
        if not claimed:
            return None
        async with self.engine.connect() as conn:
            summary = await build_summary(conn, period, self.rules(), now=now)
        figures = summary.model_dump(mode="json")
        body = {"event": SUMMARY_EVENT, "summary": figures}
        timeout = aiohttp.ClientTimeout(total=self.webhooks.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            delivered = await deliver(http, self.webhooks, body)
        async with self.engine.begin() as conn:
            await mark_sent(
                conn,
                period,
                instance=self.instance,
                now=self._clock(),
                delivered=delivered,
                summary=figures,
            )
        self.sent += 1
        log.info("report summary %s sent to %d webhook(s)", period.key, delivered)
        return summary

    async def _run(self) -> None:
        while not self.stopping:
            try:
                await self.send_due()
            except Exception:
                # A database or network hiccup costs one check, never the loop.
                log.exception("report summary check failed")
            self.checks += 1
            await self._nap(self.schedule.check_interval.total_seconds())
