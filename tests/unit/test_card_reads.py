"""A simulated card reader counts reads and errors as a real one does, retries included.

The proof that matters: the built-in card-reader rule, fed the simulated terminal's own
health reports, fires on a failing reader's error share (not on events) within minutes
at a busy till, and stays quiet for a healthy reader however busy its till.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from datetime import UTC, datetime, timedelta

from posfleet.contract import HealthReport
from posfleet.diagnostics.cel_expressions import Expression
from posfleet.diagnostics.findings import FindingKind
from posfleet.diagnostics.rule_engine import RuleEngine
from posfleet.diagnostics.rule_files import load_builtin_rules
from posfleet.diagnostics.rule_model import Rule
from posfleet.simulator.card_reads import READ_ATTEMPTS, read_attempts
from posfleet.simulator.demo_story import BUSY_TILL_SALES_PER_HOUR
from posfleet.simulator.faults import FaultName
from posfleet.simulator.terminal_model import SimulatedTerminal

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
REPORT_EVERY_S = 10


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _totals(terminal: SimulatedTerminal) -> tuple[int, int]:
    reader = terminal.health().card_reader
    assert reader is not None
    parts = (reader.chip, reader.magstripe, reader.contactless)
    return sum(p.reads for p in parts), sum(p.errors for p in parts)


def _reader_rule() -> Rule:
    [rule] = [r for r in load_builtin_rules() if r.id == "card_reader.errors"]
    return rule


def _reader_engine() -> RuleEngine:
    return RuleEngine([_reader_rule()])


def _share_only_rule() -> Rule:
    """The built-in rule's share test without its minimum count: what fired on healthy readers."""
    share = "increase.reads >= 10.0 && increase.errors / increase.reads > 0.05"
    return dataclasses.replace(
        _reader_rule(), id="share_only", when=Expression.compile(share), clear_when=None
    )


def _report_until(
    engine: RuleEngine, terminal: SimulatedTerminal, clock: FakeClock, until_s: float
) -> float | None:
    """Report health every 10 s until ``until_s``; the time the rule opened, if it did."""
    opened_at = None
    seq = int(clock.now // REPORT_EVERY_S)
    while clock.now < until_s:
        clock.now += REPORT_EVERY_S
        seq += 1
        at = T0 + timedelta(seconds=clock.now)
        report = HealthReport(seq=seq, ts=at, interval_s=REPORT_EVERY_S, metrics=terminal.health())
        for finding in engine.observe_health("T-1", report, at):
            if finding.kind is FindingKind.OPENED and opened_at is None:
                opened_at = clock.now
                increase = finding.facts["increase"]
                assert increase["reads"] >= 10
                assert increase["errors"] >= 5
                assert increase["errors"] / increase["reads"] > 0.05
                assert finding.facts["events"]["reader"] == 0  # no events were fed
    return opened_at


def test_each_try_is_a_read_and_a_failed_try_an_error() -> None:
    rng = random.Random(1)
    assert read_attempts(rng, 0.0) == (1, 0)
    assert read_attempts(rng, 1.0) == (READ_ATTEMPTS, READ_ATTEMPTS)
    tries = [read_attempts(rng, 0.4) for _ in range(20_000)]
    reads, errors = sum(r for r, _ in tries), sum(e for _, e in tries)
    assert 0.38 < errors / reads < 0.42  # the share of failed tries is the error rate
    assert 1.5 < reads / len(tries) < 1.62  # 1 + 0.4 + 0.16 tries per cardholder
    never_read = sum(1 for r, e in tries if r == e)
    assert 0.05 < never_read / len(tries) < 0.08  # 0.4 ** 3: the sale is given up


def test_a_failing_reader_at_a_busy_till_fires_the_rule_on_its_error_share() -> None:
    clock = FakeClock()
    terminal = SimulatedTerminal(
        "SN-BUSY", seed=6, clock=clock, transactions_per_hour=BUSY_TILL_SALES_PER_HOUR
    )
    engine = _reader_engine()
    assert _report_until(engine, terminal, clock, 600) is None  # healthy for 10 minutes
    sales_before = terminal.transactions_total
    reads_before, _ = _totals(terminal)

    terminal.inject(FaultName.READER_ERRORS)
    opened_at = _report_until(engine, terminal, clock, 1800)
    assert opened_at is not None and opened_at - 600 <= 6 * 60, "within a few minutes"

    reads, errors = _totals(terminal)
    sales = terminal.transactions_total - sales_before
    assert reads - reads_before > sales, "retries count as reads"
    assert errors / (reads - reads_before) > 0.2
    assert terminal.failed > 0, "some sales are given up after three tries"


def _opened_per_rule(sales_per_hour: float, seeds: range, hours: float) -> dict[str, int]:
    """How often each rule opened over ``hours`` of each healthy terminal's reports."""
    opened = {"card_reader.errors": 0, "share_only": 0}
    for seed in seeds:
        clock = FakeClock()
        terminal = SimulatedTerminal(
            f"SN-H{seed}", seed=seed, clock=clock, transactions_per_hour=sales_per_hour
        )
        assert terminal.reader_error_rate_now() < 0.011, "a healthy reader: 1 % of reads fail"
        engine = RuleEngine([_reader_rule(), _share_only_rule()])
        seq = 0
        while clock.now < hours * 3600:
            clock.now += REPORT_EVERY_S
            seq += 1
            at = T0 + timedelta(seconds=clock.now)
            metrics = terminal.health()
            report = HealthReport(seq=seq, ts=at, interval_s=REPORT_EVERY_S, metrics=metrics)
            for finding in engine.observe_health(f"T-{seed}", report, at):
                if finding.kind is FindingKind.OPENED:
                    opened[finding.rule.id] += 1
    return opened


def test_a_healthy_reader_does_not_open_the_rule_at_a_busy_or_an_ordinary_till() -> None:
    # 48 terminal-hours at each pace. The share alone fires on these very reports (one
    # failed read among 10 to 19 is already over 5 %); the rule, needing five, does not.
    busy = _opened_per_rule(BUSY_TILL_SALES_PER_HOUR, range(6), hours=8)
    assert busy["card_reader.errors"] == 0
    assert busy["share_only"] >= 10, busy
    ordinary = _opened_per_rule(30.0, range(100, 106), hours=8)
    assert ordinary["card_reader.errors"] == 0
    assert ordinary["share_only"] >= 1, ordinary


def test_a_failing_reader_at_the_busy_till_fires_within_minutes_whatever_the_luck() -> None:
    delays = []
    for seed in range(12):
        clock = FakeClock()
        terminal = SimulatedTerminal(
            f"SN-F{seed}", seed=seed, clock=clock, transactions_per_hour=BUSY_TILL_SALES_PER_HOUR
        )
        engine = _reader_engine()
        assert _report_until(engine, terminal, clock, 600) is None
        terminal.inject(FaultName.READER_ERRORS)
        opened_at = _report_until(engine, terminal, clock, 3600)
        assert opened_at is not None, f"seed {seed}: the failing reader never opened the rule"
        delays.append(opened_at - 600)
    assert statistics.median(delays) <= 5 * 60, delays
    assert max(delays) <= 10 * 60, delays


def test_a_healthy_reader_fails_about_one_read_in_a_hundred_and_seldom_retries() -> None:
    clock = FakeClock()
    terminal = SimulatedTerminal(
        "SN-OK", seed=3, clock=clock, transactions_per_hour=BUSY_TILL_SALES_PER_HOUR
    )
    clock.now = 24 * 3600 - 60  # just before the day's settlement resets the sales
    reads, errors = _totals(terminal)
    sales = terminal.approved + terminal.declined + terminal.failed
    assert 2000 < sales < 3000
    assert 0.005 < errors / reads < 0.02
    assert reads < sales * 1.03, "a retry now and then, not on every sale"
    assert terminal.failed < sales * 0.01


def test_the_terminal_reports_failing_reads_again_after_a_repair() -> None:
    clock = FakeClock()
    terminal = SimulatedTerminal("SN-R", seed=2, clock=clock, transactions_per_hour=360)

    def reader_events() -> int:
        faults = terminal.pending_faults(0)
        return sum(1 for _, f in faults if f.code == "card_reader.read_errors")

    terminal.inject(FaultName.READER_ERRORS)
    clock.now = 600
    first = reader_events()
    assert first >= 1
    clock.now = 1200
    assert reader_events() == first, "one report per onset, not one per sale"
    terminal.clear(FaultName.READER_ERRORS)
    clock.now = 1800
    terminal.advance()
    terminal.inject(FaultName.READER_ERRORS)
    clock.now = 2400
    assert reader_events() > first + 1, "a new onset is reported again"


def test_a_reboot_restarts_the_reader_counters_but_not_the_lifetime_ones() -> None:
    clock = FakeClock()
    terminal = SimulatedTerminal("SN-B", seed=4, clock=clock, transactions_per_hour=360)
    terminal.inject(FaultName.READER_ERRORS)
    clock.now = 1200
    reads, errors = _totals(terminal)
    assert reads > 0 and errors > 0
    lifetime_errors = terminal.counters().card_read_errors
    assert lifetime_errors == errors
    terminal.settle()
    terminal.reboot()
    assert _totals(terminal) == (0, 0)
    assert terminal.counters().card_read_errors == lifetime_errors
