"""Every built-in rule against a simulated terminal: fault in, incident out, and back.

Component level on purpose (the simulator's health and faults, the real ingest batch step
and a real SQLite store, no broker), with simulated time, so an hour-long scenario runs
in a second. Each scenario checks what support staff see: the incident opens with the
rule's cause and remedy, resolves once the fault is repaired, and a fault that comes
straight back reopens the same incident instead of adding a second one.

Faults the simulator cannot inject are set up through its state (a worn print head, a
weak Wi-Fi signal); the firmware mismatch rule is driven through the engine's rollout
hook, since intended firmware comes from rollouts, not from terminals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from posfleet.broker_bridge import RawMessage, store_batch
from posfleet.contract import (
    Channel,
    FaultEvent,
    HealthReport,
    Inventory,
    State,
    encode,
    topic,
)
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.runtime import Diagnostics, DiagnosticsSettings
from posfleet.simulator.faults import FaultName, fault_event
from posfleet.simulator.terminal_model import SimulatedTerminal
from posfleet.store import create_engine, upgrade_engine
from posfleet.store.incidents import IncidentRecord, IncidentState, list_incidents

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
INTERVAL_S = 30


@dataclass
class Bench:
    """One simulated terminal reporting into ingest + diagnostics on simulated time."""

    terminal_id: str
    sim: SimulatedTerminal
    diagnostics: Diagnostics
    engine: AsyncEngine
    clock: list[float]
    seq: int = 0
    acked: int = 0
    reporting: bool = True

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.clock[0])

    async def publish(self, channel: Channel, payload: bytes) -> None:
        raw = RawMessage(topic=topic(self.terminal_id, channel), payload=payload)
        async with self.engine.begin() as conn:
            outcome = await store_batch(conn, [raw], now=self.now())
        assert outcome.dead_lettered == 0
        await self.diagnostics.judge(outcome.stored)

    async def start(self) -> None:
        identity = self.sim.identity
        inventory = Inventory(
            model=identity.model,
            serial=identity.serial,
            firmware_version=identity.firmware_version,
            agent_version="1.0.0",
            site_id="SITE-1",
            merchant_id="M-1",
            ts=self.now(),
        )
        await self.publish(Channel.INVENTORY, encode(inventory))
        state = State(online=True, agent_version="1.0.0", boot_id="b1", ts=self.now())
        await self.publish(Channel.STATE, encode(state))

    async def step(self, seconds: float = INTERVAL_S) -> None:
        """Let ``seconds`` pass; the terminal reports (unless silenced), the engine ticks."""
        self.clock[0] += seconds
        if self.reporting:
            for number, fault in self.sim.pending_faults(self.acked):
                self.acked = max(self.acked, number)
                self.seq += 1
                event = FaultEvent(
                    seq=self.seq,
                    ts=self.now(),
                    code=fault.code,
                    component=fault.component,
                    severity=fault.severity,
                    detail=fault.detail,
                    zvt_result_code=fault.zvt_result_code,
                )
                await self.publish(Channel.EVENT, encode(event))
            self.seq += 1
            report = HealthReport(
                seq=self.seq, ts=self.now(), interval_s=INTERVAL_S, metrics=self.sim.health()
            )
            await self.publish(Channel.HEALTH, encode(report))
        await self.diagnostics.tick(self.now())

    async def incidents(self, rule_id: str) -> list[IncidentRecord]:
        async with self.engine.connect() as conn:
            return await list_incidents(conn, terminal_id=self.terminal_id, rule_id=rule_id)

    async def run_until(
        self, rule_id: str, state: IncidentState | None, *, within_s: float
    ) -> list[IncidentRecord]:
        """Step until the rule's newest incident is in ``state`` (None: no incident)."""
        deadline = self.clock[0] + within_s
        while True:
            found = await self.incidents(rule_id)
            current = found[0].state if found else None
            if state is None and not found:
                return found
            if state is not None and current is state:
                return found
            if self.clock[0] >= deadline:
                raise AssertionError(
                    f"{rule_id}: after {within_s:g} simulated s the incident is {current}, "
                    f"expected {state}"
                )
            await self.step()


BenchFactory = Callable[..., Awaitable[Bench]]


@pytest.fixture
async def bench_factory(tmp_path: Path) -> AsyncIterator[BenchFactory]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'scenarios.db'}")
    await upgrade_engine(engine)
    clock = [0.0]
    diagnostics = Diagnostics(
        engine,
        DiagnosticsSettings(tick_interval_s=3600, reload_interval_s=3600),
        clock=lambda: T0 + timedelta(seconds=clock[0]),
    )
    async with diagnostics:

        async def make(**terminal_options: object) -> Bench:
            terminal_id = "SCN-1"
            sim = SimulatedTerminal(
                terminal_id,
                seed=7,
                clock=lambda: clock[0],
                wall_epoch=T0.timestamp(),
                **terminal_options,  # type: ignore[arg-type]
            )
            bench = Bench(terminal_id, sim, diagnostics, engine, clock)
            await bench.start()
            await bench.step()
            return bench

        yield make
    await engine.dispose()


@dataclass(frozen=True)
class Scenario:
    rule_id: str
    inject: Callable[[SimulatedTerminal], None]
    repair: Callable[[SimulatedTerminal], None]
    options: dict[str, object] | None = None
    open_within_s: float = 600
    resolve_within_s: float = 1200


def _set(**attributes: object) -> Callable[[SimulatedTerminal], None]:
    def apply(sim: SimulatedTerminal) -> None:
        sim.advance()
        for name, value in attributes.items():
            setattr(sim, name, value)

    return apply


def _bump(name: str, n: int) -> Callable[[SimulatedTerminal], None]:
    def apply(sim: SimulatedTerminal) -> None:
        sim.advance()
        setattr(sim, name, getattr(sim, name) + n)

    return apply


def _add_declines(code: str, n: int) -> Callable[[SimulatedTerminal], None]:
    def apply(sim: SimulatedTerminal) -> None:
        sim.advance()
        sim.decline_codes[code] = sim.decline_codes.get(code, 0) + n

    return apply


def _fault(
    name: str,
) -> tuple[Callable[[SimulatedTerminal], None], Callable[[SimulatedTerminal], None]]:
    return (lambda sim: sim.inject(name)), (lambda sim: sim.clear(name))


BUSY: dict[str, object] = {"transactions_per_hour": 900.0}

SCENARIOS = [
    Scenario("printer.not_ready", *_fault("paper_out")),
    Scenario("printer.paper_low", _set(paper_lines=60), _set(paper_lines=1500)),
    Scenario("card_reader.errors", *_fault("reader_errors"), options=BUSY, resolve_within_s=1800),
    Scenario("tamper.detected", *_fault("tamper")),
    Scenario("keys.dukpt_low", *_fault("dukpt_exhausted"), resolve_within_s=4000),
    Scenario("battery.low", *_fault("low_battery")),
    Scenario("temperature.high", *_fault("overheat")),
    Scenario("network.host_unreachable", *_fault("host_down")),
    Scenario(
        "network.weak_signal",
        _set(base_rssi=-92, rssi=-92),
        _set(base_rssi=-55, rssi=-55),
    ),
    Scenario("network.tls_failures", _bump("tls_failures", 6), _bump("tls_failures", 0)),
    Scenario(
        "declines.host_side", _add_declines("91", 8), _add_declines("05", 0), resolve_within_s=1800
    ),
    Scenario(
        "declines.pin_pad", _add_declines("55", 8), _add_declines("05", 0), resolve_within_s=3600
    ),
    Scenario("storage.full", *_fault("storage_full")),
    Scenario("memory.high", _set(memory=95.0), _set(memory=40.0)),
    Scenario("clock.drift", *_fault("clock_drift")),
    Scenario(
        "system.reboot_loop", *_fault("reboot_loop"), open_within_s=1800, resolve_within_s=5400
    ),
    Scenario("maintenance.print_head", _set(lines_printed=2_500_000), _set(lines_printed=0)),
    Scenario("maintenance.card_reader", _set(insertions=600_000), _set(insertions=0)),
    Scenario("maintenance.battery", _set(battery_cycles=650), _set(battery_cycles=5)),
]


def test_every_builtin_rule_has_a_scenario() -> None:
    covered = {s.rule_id for s in SCENARIOS} | {
        "terminal.offline",
        "firmware.mismatch",
        "firmware.rolled_back",
    }
    assert {rule.id for rule in load_builtin_rules()} == covered


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.rule_id)
async def test_fault_opens_resolves_and_flaps_into_one_incident(
    bench_factory: BenchFactory, scenario: Scenario
) -> None:
    bench: Bench = await bench_factory(**(scenario.options or {}))
    rule = next(r for r in load_builtin_rules() if r.id == scenario.rule_id)
    for _ in range(3):
        await bench.step()
    assert await bench.incidents(rule.id) == [], "no incident before the fault"

    scenario.inject(bench.sim)
    [incident] = await bench.run_until(rule.id, IncidentState.OPEN, within_s=scenario.open_within_s)
    assert incident.cause == rule.cause
    assert incident.remedy == list(rule.remedy)
    assert incident.title == rule.title
    assert incident.severity == rule.severity.value
    assert incident.model == bench.sim.identity.model

    scenario.repair(bench.sim)
    [resolved] = await bench.run_until(
        rule.id, IncidentState.RESOLVED, within_s=scenario.resolve_within_s
    )
    assert resolved.id == incident.id

    scenario.inject(bench.sim)
    found = await bench.run_until(rule.id, IncidentState.OPEN, within_s=scenario.open_within_s)
    assert [i.id for i in found] == [incident.id], "a fault that comes back is the same incident"
    assert found[0].reopen_count == 1


async def test_silent_terminal_gets_an_offline_incident_resolved_when_it_returns(
    bench_factory: BenchFactory,
) -> None:
    bench: Bench = await bench_factory()
    bench.reporting = False
    await bench.step(INTERVAL_S)
    assert await bench.incidents("terminal.offline") == [], "one missed report is not offline"
    [incident] = await bench.run_until(
        "terminal.offline", IncidentState.OPEN, within_s=4 * INTERVAL_S
    )
    assert "twice the terminal's report interval" in incident.cause
    bench.reporting = True
    [resolved] = await bench.run_until(
        "terminal.offline", IncidentState.RESOLVED, within_s=INTERVAL_S
    )
    assert resolved.id == incident.id


async def test_firmware_mismatch_after_a_rollout_opens_and_clears(
    bench_factory: BenchFactory,
) -> None:
    bench: Bench = await bench_factory()
    diagnostics = bench.diagnostics
    await diagnostics.set_intended_firmware(bench.terminal_id, "9.9.9", bench.now())
    await bench.run_until("firmware.mismatch", IncidentState.OPEN, within_s=2 * 3600)
    await diagnostics.set_intended_firmware(
        bench.terminal_id, bench.sim.identity.firmware_version, bench.now()
    )
    [incident] = await bench.incidents("firmware.mismatch")
    assert incident.state is IncidentState.RESOLVED


async def test_a_firmware_rollback_opens_its_incident_and_clears_a_day_later(
    bench_factory: BenchFactory,
) -> None:
    """The simulator's own rollback report (what its boot loader says after a boot loop)."""
    bench: Bench = await bench_factory()
    rule = next(r for r in load_builtin_rules() if r.id == "firmware.rolled_back")
    bench.sim.queue_fault(
        fault_event(FaultName.FIRMWARE_BOOT_LOOP, "firmware rolled back: failed to boot 3 times")
    )
    [incident] = await bench.run_until(rule.id, IncidentState.OPEN, within_s=2 * INTERVAL_S)
    assert incident.title == "New firmware failed and was rolled back"
    assert incident.remedy == list(rule.remedy)
    # No second rollback for a day: the incident resolves by itself.
    bench.clock[0] += 24 * 3600 + INTERVAL_S
    await bench.step()
    [resolved] = await bench.incidents(rule.id)
    assert resolved.id == incident.id and resolved.state is IncidentState.RESOLVED
