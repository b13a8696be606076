"""The rule engine in its worker process: order, a failing request, a killed worker.

Real worker processes and a real store (SQLite file and PostgreSQL): what staff would
notice is an incident that opens after it should have cleared, or one that never clears
because the engine forgot it was open.
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    Channel,
    HealthMetrics,
    HealthReport,
    Message,
    Network,
    NetworkType,
    Topic,
)
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.rule_process import RuleProcess, RuleWorkerError
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.store.incidents import IncidentState, list_incidents
from tests.harness import async_wait_for

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
RULE = "network.host_unreachable"


def _host(terminal_id: str, seq: int, *, reachable: bool) -> Message:
    metrics = HealthMetrics(network=Network(type=NetworkType.ETHERNET, host_reachable=reachable))
    report = HealthReport(seq=seq, ts=T0, interval_s=60, metrics=metrics)
    return Message(Topic(terminal_id, Channel.HEALTH), report)


async def _states(db: AsyncEngine, terminal_id: str) -> list[IncidentState]:
    async with db.connect() as conn:
        found = await list_incidents(conn, terminal_id=terminal_id)
    return [incident.state for incident in found if incident.rule_id == RULE]


def _settings() -> DiagnosticsSettings:
    return DiagnosticsSettings(tick_interval_s=3600)


async def test_findings_handed_over_without_waiting_are_recorded_in_their_order(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    """The ingest hook does not wait for the engine: an outage and its recovery handed
    over back to back still leave the incident resolved, not open."""
    terminal_id = f"RW-ORDER-{request.node.callspec.id}"
    async with Diagnostics(engine, _settings(), clock=lambda: T0) as diagnostics:
        await diagnostics.on_stored([_host(terminal_id, 1, reachable=True)])
        for seq in range(2, 12, 2):
            await diagnostics.on_stored([_host(terminal_id, seq, reachable=False)])
            await diagnostics.on_stored([_host(terminal_id, seq + 1, reachable=True)])
        await diagnostics.settled()
        states = await _states(engine, terminal_id)
    assert states == [IncidentState.RESOLVED], "one incident, reopened and resolved in turn"
    assert diagnostics.engine_stats.messages >= 11


async def test_a_request_the_engine_cannot_take_is_refused_and_the_next_is_served() -> None:
    rules = tuple(load_builtin_rules())
    async with RuleProcess(rules) as worker:
        broken = await worker.observe(T0, ["not a message"])  # type: ignore[list-item]
        with pytest.raises(RuleWorkerError, match="AttributeError"):
            await broken
        answer = await (await worker.observe(T0, [_host("RW-NEXT", 1, reachable=False)]))
    assert [f.kind.value for f in answer.findings] == ["opened"]
    assert answer.stats.messages == 1 and worker.restarts == 0


async def test_a_killed_worker_is_started_again_and_still_clears_what_was_open(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    """The new worker learns the open incidents from the store, as after a restart."""
    terminal_id = f"RW-KILL-{request.node.callspec.id}"
    async with Diagnostics(engine, _settings(), clock=lambda: T0) as diagnostics:
        await diagnostics.judge([_host(terminal_id, 1, reachable=False)])
        assert await _states(engine, terminal_id) == [IncidentState.OPEN]
        pid = diagnostics.engine_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await async_wait_for(
            lambda: diagnostics.engine_pid != pid, 10, description="the worker's death noticed"
        )
        await diagnostics.judge([_host(terminal_id, 2, reachable=True)])
        assert await _states(engine, terminal_id) == [IncidentState.RESOLVED]
        assert diagnostics.stats.worker_restarts == 1
        assert diagnostics.engine_pid not in (None, pid)


async def test_a_worker_killed_with_work_in_hand_counts_what_it_left_unjudged(
    engine: AsyncEngine, request: pytest.FixtureRequest
) -> None:
    """The messages are stored already; what staff (and /metrics) see is the count."""
    prefix = f"RW-LOST-{request.node.callspec.id}"
    backlog = [_host(f"{prefix}-{n % 500}", n // 500 + 1, reachable=True) for n in range(6000)]
    async with Diagnostics(engine, _settings(), clock=lambda: T0) as diagnostics:
        await diagnostics.on_stored(backlog)  # some 0.3 s of judging, not waited for
        pid = diagnostics.engine_pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        await diagnostics.settled()
        assert diagnostics.stats.failed_requests == 1
        await diagnostics.judge([_host(f"{prefix}-after", 1, reachable=False)])
        assert await _states(engine, f"{prefix}-after") == [IncidentState.OPEN]
        assert diagnostics.stats.worker_restarts == 1
