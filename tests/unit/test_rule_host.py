"""The rule worker's engine host judges a health report's sample as the engine judges
the report itself: what crosses the pipe loses nothing a rule reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from posfleet.contract import (
    Channel,
    HealthMetrics,
    HealthReport,
    Message,
    Network,
    NetworkType,
    Topic,
)
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.rule_wire import WorkerConfig
from posfleet.diagnostics.rule_worker import RuleHost
from posfleet.store.report_batch import Sample

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def _reports() -> list[HealthReport]:
    reports = []
    shape = [(True, 40.0), (False, 97.5), (False, 99.0), (True, 38.5)]
    for seq, (reachable, temperature) in enumerate(shape):
        metrics = HealthMetrics(
            network=Network(type=NetworkType.WIFI, host_reachable=reachable, rssi_dbm=-70),
            temperature_c=temperature,
            storage_used_pct=99.5 if not reachable else 50,
            uptime_s=600 * (seq + 1),
        )
        at = T0 + timedelta(minutes=seq)
        reports.append(HealthReport(seq=seq + 1, ts=at, interval_s=60, metrics=metrics))
    return reports


def test_a_sample_is_judged_as_its_report() -> None:
    rules = load_builtin_rules()
    engine = RuleEngine(rules)
    host = RuleHost(WorkerConfig(rules=tuple(rules)))
    for minute, report in enumerate(_reports()):
        now = T0 + timedelta(minutes=minute)
        direct = engine.observe(Message(Topic("T-1", Channel.HEALTH), report), now)
        answer = host.answer("observe", (now, [Sample.of("T-1", report)]))
        assert [(f.kind, f.rule.id, f.facts) for f in direct] == [
            (w.kind, w.rule, w.facts) for w in answer.findings
        ]
    assert host.engine.stats == engine.stats
    assert host.engine.firing("T-1") == engine.firing("T-1") == []
    assert engine.stats.opened >= 1, "the outage opened something to compare"
