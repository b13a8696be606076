"""The business-health gate in the running rollout, over real stored telemetry (SQLite and
PostgreSQL): a firmware that raises the card-reader error rate pauses the rollout after
the canary's soak and opens the fleet incident with the figures; a healthy one passes."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.contract import (
    CardReader,
    HealthMetrics,
    HealthReport,
    ReaderCounters,
    Transactions,
    utcnow,
)
from posfleet.firmware.rollout_incident import RULE_ID
from posfleet.firmware.rollout_model import RolloutPolicy, RolloutState, WaveSpec, WaveState
from posfleet.store import apply_health, write_transaction
from posfleet.store.incidents import IncidentKind, get_incident
from posfleet.store.schema import incidents
from tests.component.rollout_rows import add_fleet
from tests.component.test_rollout_runner import Central, actions, report, rollout_of, start

SOAK = timedelta(minutes=10)
MINUTE = timedelta(minutes=1)


def sample(seq: int, at: datetime, *, reads: int, errors: int, uptime_s: int) -> HealthReport:
    return HealthReport(
        seq=seq,
        ts=at,
        interval_s=60,
        metrics=HealthMetrics(
            card_reader=CardReader(chip=ReaderCounters(reads=reads, errors=errors)),
            transactions=Transactions(approved=reads, declined=0),
            uptime_s=uptime_s,
        ),
    )


async def telemetry(
    engine: AsyncEngine, terminal_ids: list[str], *, since: datetime, minutes: int,
    error_every: int, first_seq: int,
) -> None:  # fmt: skip
    """One report a minute from ``since``: 100 chip reads a minute, one error in
    ``error_every`` reads."""
    async with write_transaction(engine) as conn:
        for tid in terminal_ids:
            for i in range(minutes):
                reads, errors = 100 * i, i * (100 // error_every)
                report_ = sample(first_seq + i, since + i * MINUTE, reads=reads, errors=errors,
                                 uptime_s=600 + 60 * i)  # fmt: skip
                await apply_health(conn, tid, report_, now=report_.ts)


def policy() -> RolloutPolicy:
    return RolloutPolicy(
        waves=(WaveSpec(count=2, soak=SOAK), WaveSpec(percent=100.0, soak=SOAK)),
        offers_per_minute=6000,
        jitter_s=0,
    )


async def canary_soaked(
    engine: AsyncEngine, *, error_every_after: int
) -> tuple[int, Central, list[str]]:
    """A rollout whose canary succeeded and soaked, with telemetry before and after."""
    fleet = await add_fleet(engine, 10, sites=5)
    await telemetry(engine, fleet, since=utcnow() - 40 * MINUTE, minutes=39, error_every=100,
                    first_seq=1)  # fmt: skip
    rollout_id = await start(engine, policy())
    central = Central(engine)
    await central.rounds()
    canary = central.offered
    assert len(canary) == 2
    done = utcnow()
    await report(engine, central.publisher, canary, at=done)
    await telemetry(engine, canary, since=done + 30 * timedelta(seconds=1), minutes=10,
                    error_every=error_every_after, first_seq=1000)  # fmt: skip
    await central.rounds()
    record = await rollout_of(engine, rollout_id)
    assert record.waves[0].state is WaveState.SOAKING  # not judged before the soak is over
    assert record.waves[0].soak_until is not None
    central.clock.shift(minutes=11)
    await central.rounds()
    return rollout_id, central, canary


async def test_a_reader_regression_pauses_after_the_canary_and_opens_a_fleet_incident(
    engine: AsyncEngine,
) -> None:
    rollout_id, central, canary = await canary_soaked(engine, error_every_after=10)
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.PAUSED
    assert record.paused_reason is not None
    assert record.paused_reason.startswith("health gate after wave 1: card-reader errors 1.0 %")
    wave = record.waves[0]
    assert wave.state is WaveState.FAILED and wave.gate is not None and not wave.gate.passed
    assert wave.gate.before.terminals == wave.gate.after.terminals == 2
    assert wave.gate.before.reader_error_rate == 0.01
    assert wave.gate.after.reader_error_rate == 0.10
    assert central.offered == canary  # the other eight are never offered

    assert record.incident_id is not None and wave.gate_detail["incident_id"] == record.incident_id
    async with engine.connect() as conn:
        fleet_incident = await get_incident(conn, record.incident_id)
        children = (
            await conn.execute(
                sa.select(incidents.c.terminal_id, incidents.c.facts).where(
                    incidents.c.parent_id == record.incident_id
                )
            )
        ).all()
    assert fleet_incident is not None and fleet_incident.kind is IncidentKind.FLEET
    assert fleet_incident.title.startswith("firmware 5.3.0 regression: card-reader errors")
    assert fleet_incident.rule_id == RULE_ID and fleet_incident.firmware_version == "5.3.0"
    assert fleet_incident.facts["before"]["reader_error_rate"] == 0.01
    assert fleet_incident.facts["after"]["reader_error_rate"] == 0.10
    assert fleet_incident.facts["children"] == 2 and fleet_incident.facts["wave"] == 1
    assert sorted(tid for tid, _ in children) == sorted(canary)
    assert all(facts["after"]["read_errors"] > facts["before"]["read_errors"]
               for _, facts in children)  # fmt: skip
    pause = record.transitions[-1]
    assert pause.command == "pause" and "card-reader errors" in pause.reason_text

    # Judged again (another round, another instance): still one incident, no new offers.
    await central.rounds()
    async with engine.connect() as conn:
        fleets = await conn.scalar(
            sa.select(sa.func.count()).where(incidents.c.kind == IncidentKind.FLEET.value)
        )
    assert fleets == 1 and central.offered == canary


async def test_a_healthy_canary_passes_the_gate_with_its_figures(engine: AsyncEngine) -> None:
    rollout_id, central, _ = await canary_soaked(engine, error_every_after=100)
    record = await rollout_of(engine, rollout_id)
    assert record.state is RolloutState.RUNNING and record.current_wave == 1
    wave = record.waves[0]
    assert wave.state is WaveState.PASSED and wave.gate is not None and wave.gate.passed
    assert wave.gate.after.reads > 0 and wave.gate_detail["without_figures"] == []
    assert len(central.offered) == 10
    assert record.incident_id is None
    assert {a.rollout_id for a in await actions(engine)} == {rollout_id}
