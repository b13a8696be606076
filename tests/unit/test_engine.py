"""The rule engine alone: pure, driven with messages and explicit times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from posfleet.contract import (
    Component,
    FaultEvent,
    HealthMetrics,
    HealthReport,
    Network,
    NetworkType,
    ReaderCounters,
    Severity,
)
from posfleet.contract.health import CardReader, Printer, PrinterStatus
from posfleet.diagnostics.counter_window import CounterWindow
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_files import load_builtin_rules, parse_rules

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
RULE = """\
rules:
  - id: {id}
    title: t
    component: {component}
    severity: warning
    cause: c
    remedy: [r]
    escalation: remote_fix
"""


def _rules(*bodies: str) -> RuleEngine:
    text = "rules:\n" + "".join(
        RULE.removeprefix("rules:\n").format(id=rule_id, component=component) + extra
        for rule_id, component, extra in (b.split("|", 2) for b in bodies)
    )
    return RuleEngine(parse_rules(text, "test.yaml"))


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


class Feed:
    def __init__(self, engine: RuleEngine, terminal_id: str = "T-1") -> None:
        self.engine, self.terminal_id, self.seq = engine, terminal_id, 0

    def report(self, seconds: float, interval_s: int = 60, **metrics: object) -> list[Finding]:
        self.seq += 1
        report = HealthReport(
            seq=self.seq,
            ts=_at(seconds),
            interval_s=interval_s,
            metrics=HealthMetrics.model_validate(metrics),
        )
        return self.engine.observe_health(self.terminal_id, report, _at(seconds))


def _kinds(findings: list[Finding]) -> list[str]:
    return [f"{f.kind.value}:{f.rule.id}" for f in findings]


def test_for_holds_back_until_the_condition_lasted_long_enough() -> None:
    engine = _rules("hot|temperature|    when: temperature_c > 60.0\n    for: 5m\n")
    feed = Feed(engine)
    assert feed.report(0, temperature_c=70.0) == []
    assert engine.tick(_at(240)) == []
    assert _kinds(engine.tick(_at(301))) == ["opened:hot"]
    # A dip below the threshold before the duration restarts the wait.
    feed2 = Feed(engine, "T-2")
    feed2.report(0, temperature_c=70.0)
    feed2.report(120, temperature_c=20.0)
    feed2.report(180, temperature_c=70.0)
    assert [f.terminal_id for f in engine.tick(_at(400))] == []
    assert [f.terminal_id for f in engine.tick(_at(481))] == ["T-2"]


def test_clear_when_gives_hysteresis() -> None:
    engine = _rules(
        "hot|temperature|    when: temperature_c > 60.0\n    clear_when: temperature_c <= 55.0\n"
    )
    feed = Feed(engine)
    assert _kinds(feed.report(0, temperature_c=61.0)) == ["opened:hot"]
    # Hovering just under the trigger does not resolve and reopen it every report.
    assert feed.report(60, temperature_c=59.0) == []
    assert feed.report(120, temperature_c=60.5) == []
    assert _kinds(feed.report(180, temperature_c=54.0)) == ["cleared:hot"]


def test_counter_increase_survives_a_reboot() -> None:
    window = CounterWindow(timedelta(minutes=10))
    for seconds, value in ((0, 100), (60, 110), (120, 3), (180, 8)):
        window.add(_at(seconds), value)
    # 10 before the reboot, 3 right after it (from zero), then 5.
    assert window.increase(_at(180)) == 18
    # Growth before the window stops counting; the last sample before it is the baseline.
    assert window.increase(_at(60 + 600 + 1)) == 8
    assert window.increase(_at(180 + 600 + 1)) == 0


def _reader(reads: int, errors: int) -> CardReader:
    return CardReader(chip=ReaderCounters(reads=reads, errors=errors))


def test_error_ratio_over_a_window_opens_and_clears() -> None:
    rule = (
        "reader|card_reader|    window: 10m\n"
        "    increase:\n"
        "      reads: card_reader.chip.reads\n      errors: card_reader.chip.errors\n"
        "    when: increase.reads >= 10.0 && increase.errors / increase.reads > 0.05\n"
    )
    engine = _rules(rule)
    feed = Feed(engine)
    feed.report(0, card_reader=_reader(0, 0))
    assert feed.report(60, card_reader=_reader(20, 0)) == []
    opened = feed.report(120, card_reader=_reader(40, 5))
    assert _kinds(opened) == ["opened:reader"]
    assert opened[0].facts["increase"] == {"reads": 40.0, "errors": 5.0}
    # The terminal reboots: counters restart from zero, and the errors stop.
    feed.report(180, card_reader=_reader(0, 0))
    assert _kinds(feed.report(800, card_reader=_reader(60, 0))) == ["cleared:reader"]


def test_absence_opens_after_k_intervals_and_clears_on_the_next_report() -> None:
    engine = _rules("offline|system|    absence_intervals: 2\n")
    feed = Feed(engine)
    feed.report(0, interval_s=60)
    assert engine.tick(_at(119)) == []
    assert _kinds(engine.tick(_at(121))) == ["opened:offline"]
    assert engine.tick(_at(500)) == []
    assert _kinds(feed.report(510)) == ["cleared:offline"]


def test_only_rules_whose_inputs_changed_are_evaluated() -> None:
    engine = _rules(
        "hot|temperature|    when: temperature_c > 60.0\n",
        "low|battery|    when: battery.percent < 15.0\n",
    )
    feed = Feed(engine)
    battery = {"percent": 80.0, "charging": False}
    feed.report(0, temperature_c=30.0, battery=battery)
    assert engine.stats.evaluations == 2
    feed.report(60, temperature_c=30.0, battery=battery)
    assert engine.stats.evaluations == 2, "nothing changed: nothing evaluated"
    feed.report(120, temperature_c=31.0, battery=battery)
    assert engine.stats.evaluations == 3, "only the temperature rule"


def test_a_condition_that_cannot_be_evaluated_is_counted_not_fatal() -> None:
    engine = _rules("bad|network|    when: network.host_reachable < 3\n")
    feed = Feed(engine)
    # A boolean compared with a number: CEL has no such overload.
    findings = feed.report(0, network=Network(type=NetworkType.ETHERNET, host_reachable=True))
    assert findings == []
    assert engine.stats.condition_errors == 1


def test_a_reported_fault_no_rule_covers_is_an_incident_until_it_goes_quiet() -> None:
    engine = _rules("hot|temperature|    when: temperature_c > 60.0\n")
    event = FaultEvent(
        seq=1, ts=T0, code="pin_pad.stuck", component=Component.PIN_PAD, severity=Severity.ERROR
    )
    opened = engine.observe_event("T-1", event, T0)
    assert _kinds(opened) == ["opened:reported.pin_pad.stuck"]
    assert engine.observe_event("T-1", event.model_copy(update={"seq": 2}), _at(60)) == []
    assert engine.tick(_at(60 + 29 * 60)) == []
    assert _kinds(engine.tick(_at(60 + 30 * 60))) == ["cleared:reported.pin_pad.stuck"]


def test_reload_keeps_running_state_and_clears_removed_rules() -> None:
    hot = "hot|temperature|    when: temperature_c > 60.0\n"
    engine = _rules(hot, "low|battery|    when: battery.percent < 15.0\n")
    feed = Feed(engine)
    feed.report(0, temperature_c=70.0, battery={"percent": 5.0, "charging": False})
    assert sorted(engine.firing("T-1")) == ["hot", "low"]
    removed = engine.replace_rules([r for r in engine.rules if r.id == "hot"])
    assert [(f.kind, f.rule.id) for f in removed] == [(FindingKind.CLEARED, "low")]
    # "hot" stays firing: no second OPENED for it after the reload.
    assert feed.report(60, temperature_c=71.0) == []
    assert engine.firing("T-1") == ["hot"]


def test_a_firmware_rollback_is_named_by_its_own_rule_not_a_generic_report() -> None:
    engine = RuleEngine([r for r in load_builtin_rules() if r.id == "firmware.rolled_back"])
    event = FaultEvent(
        seq=1,
        ts=T0,
        code="firmware.rolled_back",
        component=Component.FIRMWARE,
        severity=Severity.ERROR,
        detail="new firmware failed to boot; previous slot restored",
    )
    opened = engine.observe_event("T-1", event, T0)
    assert [(f.kind.value, f.rule.title) for f in opened] == [
        ("opened", "New firmware failed and was rolled back")
    ]
    assert "Nothing for the merchant" in opened[0].rule.remedy[0]
    assert engine.tick(_at(23 * 3600)) == []
    assert _kinds(engine.tick(_at(24 * 3600 + 60))) == ["cleared:firmware.rolled_back"]


def _fault(seq: int, code: str, component: Component) -> FaultEvent:
    return FaultEvent(seq=seq, ts=T0, code=code, component=component, severity=Severity.ERROR)


def _host_event(seq: int) -> FaultEvent:
    return _fault(seq, "network.host_unreachable", Component.NETWORK)


def test_an_event_before_the_first_health_report_is_handed_to_its_rule_once_it_comes() -> None:
    # The ingest's fast lane may hand over a fault before the health report the terminal
    # sent first: it is an incident at once, and the rule takes it over with that report,
    # so that it clears with the health instead of after half an hour of quiet.
    engine = RuleEngine(load_builtin_rules())
    feed = Feed(engine)
    early = engine.observe_event("T-1", _host_event(2), _at(0.1))
    assert _kinds(early) == ["opened:reported.network.host_unreachable"]
    down = Network(type=NetworkType.ETHERNET, host_reachable=False)
    handed = feed.report(0.2, network=down)
    # One incident: the reported fault's becomes the rule's, with its cause and remedy.
    assert _kinds(handed) == ["taken_over:network.host_unreachable"]
    assert handed[0].replaces is not None
    assert handed[0].replaces.id == "reported.network.host_unreachable"
    assert engine.firing("T-1") == ["network.host_unreachable"]
    back = Network(type=NetworkType.ETHERNET, host_reachable=True)
    assert "cleared:network.host_unreachable" in _kinds(feed.report(60, network=back))


def _printer(seq: int, seconds: float, status: PrinterStatus) -> HealthReport:
    metrics = HealthMetrics(printer=Printer(status=status))
    return HealthReport(seq=seq, ts=_at(seconds), interval_s=60, metrics=metrics)


def _jam(seq: int) -> FaultEvent:
    return _fault(seq, "printer.jam", Component.PRINTER)


def test_a_health_report_sent_before_an_early_event_does_not_clear_its_incident() -> None:
    # The terminal said "printer ok" (seq 1) and then "jam" (seq 2); the fast lane hands
    # the jam over first. The older "ok" must not close the jam's incident the moment the
    # rule takes it over: only a report sent after the jam can.
    engine = RuleEngine(load_builtin_rules())
    engine.observe_event("T-1", _jam(2), _at(0.1))
    handed = _kinds(engine.observe_health("T-1", _printer(1, 0.0, PrinterStatus.OK), _at(0.2)))
    assert handed == ["taken_over:printer.not_ready"]
    assert engine.firing("T-1") == ["printer.not_ready"]
    # Nor may the clock, judging the rule's window against that same old report.
    assert engine.tick(_at(30)) == []
    assert engine.firing("T-1") == ["printer.not_ready"]
    later = engine.observe_health("T-1", _printer(3, 60, PrinterStatus.OK), _at(60))
    assert _kinds(later) == ["cleared:printer.not_ready"]


def test_a_health_report_overtaken_by_an_event_cannot_clear_what_the_event_opened() -> None:
    engine = RuleEngine(load_builtin_rules())
    engine.observe_health("T-1", _printer(1, 0, PrinterStatus.OK), _at(0))
    assert _kinds(engine.observe_event("T-1", _jam(3), _at(59))) == ["opened:printer.not_ready"]
    # seq 2 left the terminal before the jam; it comes in late through the bulk lane.
    assert engine.observe_health("T-1", _printer(2, 58, PrinterStatus.OK), _at(60)) == []
    assert engine.firing("T-1") == ["printer.not_ready"]
    assert engine.tick(_at(61)) == [], "the clock reads the same overtaken report"
    assert engine.firing("T-1") == ["printer.not_ready"]
    cleared = engine.observe_health("T-1", _printer(4, 120, PrinterStatus.OK), _at(120))
    assert _kinds(cleared) == ["cleared:printer.not_ready"]


def test_an_event_arriving_after_a_later_health_report_is_judged_against_that_report() -> None:
    engine = RuleEngine(load_builtin_rules())
    engine.observe_health("T-1", _printer(1, 0, PrinterStatus.OK), _at(0))
    engine.observe_health("T-1", _printer(3, 60, PrinterStatus.OK), _at(60))
    # The jam (seq 2) happened between the two reports; "ok" at seq 3 says it is over.
    late = _kinds(engine.observe_event("T-1", _jam(2), _at(61)))
    assert late == ["opened:printer.not_ready", "cleared:printer.not_ready"]
    assert engine.firing("T-1") == []


def test_a_late_event_its_rule_already_saw_through_the_health_adds_nothing() -> None:
    engine = RuleEngine(load_builtin_rules())
    engine.observe_health("T-1", _printer(1, 0, PrinterStatus.OK), _at(0))
    assert _kinds(engine.observe_health("T-1", _printer(3, 1, PrinterStatus.JAM), _at(1))) == [
        "opened:printer.not_ready"
    ]
    assert _kinds(engine.observe_health("T-1", _printer(4, 2, PrinterStatus.OK), _at(2))) == [
        "cleared:printer.not_ready"
    ]
    assert engine.observe_event("T-1", _jam(2), _at(3)) == []
    # Nor does it linger in the window to fire the rule on the next change.
    paper = engine.observe_health("T-1", _printer(5, 60, PrinterStatus.PAPER_LOW), _at(60))
    assert "opened:printer.not_ready" not in _kinds(paper)


def test_an_event_whose_rule_never_gets_its_inputs_stays_a_reported_fault() -> None:
    engine = RuleEngine(load_builtin_rules())
    assert _kinds(engine.observe_event("T-1", _host_event(1), T0)) == [
        "opened:reported.network.host_unreachable"
    ]
    assert engine.tick(_at(15 * 60)) == []
    assert engine.firing("T-1") == ["reported.network.host_unreachable"]
    # Too late to hand over: the reported fault goes its own way (quiet for 30 minutes).
    feed = Feed(engine)
    feed.report(16 * 60, network=Network(type=NetworkType.ETHERNET, host_reachable=False))
    assert "reported.network.host_unreachable" in engine.firing("T-1")


def test_the_printer_rule_clears_exactly_when_the_contract_says_the_printer_works() -> None:
    # One definition of "the printer is working" (PrinterStatus.working) is shared by
    # telemetry's printer_fault and the hourly rollups; the built-in rule must agree.
    [rule] = [r for r in load_builtin_rules() if r.id == "printer.not_ready"]
    assert rule.clear_when is not None
    for status in PrinterStatus:
        clears = rule.clear_when.evaluate({"printer": {"status": status.value}})
        assert clears is status.working, status
