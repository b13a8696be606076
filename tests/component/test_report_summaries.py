"""The scheduled summary: two central instances on one database, a real local webhook
receiver; the summary arrives once, with the week's figures, and a claim left by an
instance that died is taken over."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.webhooks import WebhookSettings
from posfleet.reports import ReportSummaries, SummaryCadence, SummarySchedule
from posfleet.store.schema import report_summaries
from tests.component.report_rows import seed_reports
from tests.harness import async_wait_for

MONDAY = datetime(2026, 3, 16, 7, 0, tzinfo=UTC)
"""An hour after the weekly summary of 9-15 March fell due (06:00 UTC)."""


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    bodies: list[dict[str, Any]] = []

    async def hook(request: web.Request) -> web.Response:
        bodies.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook", bodies
    await runner.cleanup()


async def test_two_instances_send_the_weekly_summary_once(
    engine: AsyncEngine, receiver: tuple[str, list[dict[str, Any]]]
) -> None:
    await seed_reports(engine)
    url, bodies = receiver
    now = [MONDAY]
    rules = load_builtin_rules()
    schedule = SummarySchedule(
        SummaryCadence.WEEKLY, hour_utc=6, check_interval=timedelta(milliseconds=20)
    )

    def instance(name: str) -> ReportSummaries:
        return ReportSummaries(
            engine,
            WebhookSettings(urls=(url,), max_attempts=2),
            schedule,
            instance=name,
            rules=lambda: rules,
            clock=lambda: now[0],
        )

    async with instance("central-a") as a, instance("central-b") as b:
        await async_wait_for(lambda: len(bodies) == 1, description="the summary arrives")
        checks = (a.checks, b.checks)
        await async_wait_for(
            lambda: a.checks > checks[0] + 2 and b.checks > checks[1] + 2,
            description="both instances look again",
        )
        assert len(bodies) == 1, "a second instance sent the summary again"
        assert a.sent + b.sent == 1

        summary = bodies[0]["summary"]
        assert bodies[0]["event"] == "report.summary"
        # 9-15 March: incidents 3, 5 and 6 of tests/component/report_rows.py.
        assert (summary["since"], summary["until"]) == (
            "2026-03-09T00:00:00Z",
            "2026-03-16T00:00:00Z",
        )
        assert (summary["incidents"], summary["unresolved"]) == (3, 1)
        assert summary["by_severity"] == {"critical": 1, "warning": 2}
        assert (summary["mtta_s"], summary["mttr_s"]) == (1800.0, 3600.0)
        assert summary["top_rules"][0] == {"rule_id": "printer.paper_out", "incidents": 2}
        assert (summary["swap_candidates"], summary["worn_parts"]) == (0, 4)

    # The next week: an instance claimed it and died before sending; after the lease
    # another takes the claim over and sends.
    now[0] = MONDAY + timedelta(days=7)
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(report_summaries).values(
                period_key="weekly:2026-03-16",
                since=MONDAY - timedelta(hours=7),
                until=MONDAY + timedelta(days=7, hours=-7),
                claimed_by="central-dead",
                claimed_at=now[0] - timedelta(minutes=11),
            )
        )
    survivor = instance("central-b")
    sent = await survivor.send_due()
    assert sent is not None and sent.incidents == 0
    assert await survivor.send_due() is None
    assert len(bodies) == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(report_summaries).order_by("since"))).all()
    assert [(r.claimed_by, r.delivered, r.sent_at is not None) for r in rows] == [
        (rows[0].claimed_by, 1, True),
        ("central-b", 1, True),
    ]
    assert rows[0].claimed_by in ("central-a", "central-b")
