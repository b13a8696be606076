"""Webhook notifications against a real local aiohttp server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from posfleet.contract import Channel, HealthMetrics, HealthReport, Message, Printer, Topic
from posfleet.contract import PrinterStatus as PS
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.diagnostics.webhooks import (
    NotificationEvent,
    WebhookNotifier,
    WebhookSettings,
)
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.incidents import IncidentKind, IncidentRecord, IncidentState
from tests.harness import async_wait_for

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


@dataclass
class Receiver:
    url: str
    bodies: list[dict[str, Any]] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    failures_left: int = 0
    status_when_failing: int = 503
    attempts: int = 0


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver(url="")

    async def hook(request: web.Request) -> web.Response:
        state.attempts += 1
        if state.failures_left > 0:
            state.failures_left -= 1
            return web.Response(status=state.status_when_failing)
        state.bodies.append(await request.json())
        state.arrivals.append(time.monotonic())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}/hook"
    yield state
    await runner.cleanup()


def _incident(n: int = 1) -> IncidentRecord:
    return IncidentRecord(
        id=n,
        kind=IncidentKind.TERMINAL,
        terminal_id="T-1",
        rule_id="printer.not_ready",
        state=IncidentState.OPEN,
        title="Printer cannot print",
        component="printer",
        severity="error",
        escalation="remote_fix",
        cause="paper",
        remedy=["reload"],
        facts={},
        parent_id=None,
        correlation=None,
        model=None,
        firmware_version=None,
        site_id=None,
        merchant_id=None,
        opened_at=T0,
        last_seen_at=T0,
        acknowledged_at=None,
        resolved_at=None,
        updated_at=T0,
        occurrences=1,
        reopen_count=0,
        assignee=None,
        acknowledged_by=None,
        resolved_by=None,
        resolution="",
        escalated_to=None,
    )


def _settings(receiver: Receiver, **overrides: Any) -> WebhookSettings:
    values: dict[str, Any] = {
        "urls": (receiver.url,),
        "backoff_initial_s": 0.05,
        "backoff_max_s": 0.2,
    }
    values.update(overrides)
    return WebhookSettings(**values)


async def test_a_failing_receiver_gets_the_notification_after_retries(receiver: Receiver) -> None:
    receiver.failures_left = 2
    async with WebhookNotifier(_settings(receiver)) as notifier:
        notifier.notify(NotificationEvent.OPENED, _incident())
        await notifier.drain()
    assert receiver.attempts == 3
    [body] = receiver.bodies
    assert body["event"] == "incident.opened"
    assert body["incident"]["rule_id"] == "printer.not_ready"
    assert notifier.stats.retries == 2 and notifier.stats.delivered == 1


async def test_a_permanent_error_is_not_retried(receiver: Receiver) -> None:
    receiver.failures_left, receiver.status_when_failing = 100, 400
    async with WebhookNotifier(_settings(receiver)) as notifier:
        notifier.notify(NotificationEvent.OPENED, _incident())
        await notifier.drain()
    assert receiver.attempts == 1
    assert notifier.stats.failed == 1


async def test_retries_stop_at_the_cap(receiver: Receiver) -> None:
    receiver.failures_left = 100
    async with WebhookNotifier(_settings(receiver, max_attempts=3)) as notifier:
        notifier.notify(NotificationEvent.RESOLVED, _incident())
        await notifier.drain()
    assert receiver.attempts == 3 and notifier.stats.failed == 1


async def test_notifications_are_rate_limited(receiver: Receiver) -> None:
    settings = _settings(receiver, rate_per_minute=600.0, burst=2)
    started = time.monotonic()
    async with WebhookNotifier(settings) as notifier:
        for n in range(6):
            notifier.notify(NotificationEvent.OPENED, _incident(n))
        await notifier.drain()
    # Two at once (the burst), then one per 0.1 s.
    assert len(receiver.bodies) == 6
    assert receiver.arrivals[-1] - started >= 0.35


async def test_an_incident_opening_and_resolving_notifies_the_webhook(
    receiver: Receiver, tmp_path: Path
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'n.db'}")
    await upgrade_engine(engine)
    settings = DiagnosticsSettings(webhook_urls=(receiver.url,), tick_interval_s=3600)
    async with Diagnostics(engine, settings, clock=lambda: T0) as diagnostics:
        for seq, status in enumerate((PS.OK, PS.JAM, PS.OK), start=1):
            metrics = HealthMetrics(printer=Printer(status=status))
            report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics)
            await diagnostics.judge([Message(Topic("WH-1", Channel.HEALTH), report)])
        await async_wait_for(lambda: len(receiver.bodies) == 2, 10, description="two webhooks")
    await engine.dispose()
    assert [b["event"] for b in receiver.bodies] == ["incident.opened", "incident.resolved"]
    assert receiver.bodies[0]["incident"]["terminal_id"] == "WH-1"
    assert receiver.bodies[1]["incident"]["state"] == "resolved"
