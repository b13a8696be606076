"""The rule worker's parts: its engine host judges a health report's sample as the engine
judges the report itself (what crosses the pipe loses nothing a rule reads), and faults
are judged ahead of the health waiting before them."""

from __future__ import annotations

import io
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
from posfleet.diagnostics.rule_worker import Arrivals, RuleHost
from posfleet.pipe_frames import FrameError, encode_frame
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


def test_a_fault_is_judged_before_the_health_reports_waiting_before_it() -> None:
    frames = [("observe", n, (), urgent) for n, urgent in [(1, False), (2, False), (3, True)]]
    arrivals = Arrivals()
    arrivals.read_all(io.BytesIO(b"".join(encode_frame(frame) for frame in frames)))
    order = []
    while (frame := arrivals.next()) is not None:
        order.append(frame[1])
    assert order == [3, 1, 2]


def test_a_stream_cut_inside_a_frame_is_an_error_after_the_whole_frames() -> None:
    whole = encode_frame(("tick", 1, (T0,), False))
    arrivals = Arrivals()
    arrivals.read_all(io.BytesIO(whole + encode_frame(("tick", 2, (T0,), False))[:7]))
    first = arrivals.next()
    assert first is not None and first[1] == 1
    assert arrivals.next() is None
    assert isinstance(arrivals.error, FrameError)
