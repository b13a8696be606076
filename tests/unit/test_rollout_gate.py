"""The business-health gate: the updated terminals against their own baseline."""

from __future__ import annotations

import pytest

from posfleet.firmware.rollout_gate import evaluate
from posfleet.firmware.rollout_model import GateTolerances, HealthFigures

TOL = GateTolerances()
BEFORE = HealthFigures(
    terminals=5, reads=1000, read_errors=12, approved=970, declined=30, reboots=1
)


def _after(**changes: int) -> HealthFigures:
    values = {
        "terminals": 5,
        "reads": 1000,
        "read_errors": 12,
        "approved": 970,
        "declined": 30,
        "reboots": 1,
    }
    values.update(changes)
    return HealthFigures(**values)


def test_a_reader_regression_names_its_figures() -> None:
    verdict = evaluate(BEFORE, _after(read_errors=98), TOL)
    assert not verdict.passed
    assert verdict.reasons == ("card-reader errors 1.2 % -> 9.8 % (+8.6 points, tolerance 2.0)",)
    assert verdict.before is BEFORE and verdict.after.read_errors == 98
    assert verdict.summary() == verdict.reasons[0]


def test_declines_and_reboots_are_judged_too() -> None:
    verdict = evaluate(BEFORE, _after(approved=925, declined=75, reboots=6), TOL)
    assert verdict.reasons == (
        "declines 3.0 % -> 7.5 % (+4.5 points, tolerance 2.0)",
        "reboots per terminal 0.20 -> 1.20 (+1.00, tolerance 0.50)",
    )


def test_the_same_figures_or_better_pass() -> None:
    assert evaluate(BEFORE, BEFORE, TOL).passed
    better = evaluate(BEFORE, _after(read_errors=0, declined=0, reboots=0), TOL)
    assert better.passed and better.reasons == () and better.summary() == "passed"


def test_a_rise_of_exactly_the_tolerance_passes() -> None:
    # 1.2 % -> 3.2 % is 2.0000000000000004 points in floating point: still 2.0.
    assert evaluate(BEFORE, _after(read_errors=32), TOL).passed
    assert not evaluate(BEFORE, _after(read_errors=33), TOL).passed
    assert evaluate(
        BEFORE, _after(reboots=3, terminals=5), GateTolerances(reboots_per_terminal=0.4)
    ).passed


def test_tolerances_are_configurable() -> None:
    strict = GateTolerances(reader_error_rate_points=0.5)
    verdict = evaluate(BEFORE, _after(read_errors=20), strict)
    assert verdict.reasons == ("card-reader errors 1.2 % -> 2.0 % (+0.8 points, tolerance 0.5)",)
    assert evaluate(BEFORE, _after(read_errors=20), TOL).passed


def test_a_gate_that_cannot_see_does_not_pass() -> None:
    verdict = evaluate(BEFORE, _after(terminals=1), GateTolerances(min_terminals=3))
    assert not verdict.passed
    assert verdict.reasons == (
        "only 1 updated terminal reported figures (the gate needs 3); it cannot judge",
    )


def test_a_rate_with_nothing_measured_after_is_not_judged() -> None:
    quiet = _after(reads=0, read_errors=0, approved=0, declined=0)
    assert evaluate(BEFORE, quiet, TOL).passed


@pytest.mark.parametrize("reboots", [0, 3])
def test_a_baseline_without_reads_counts_as_zero(reboots: int) -> None:
    fresh = HealthFigures(
        terminals=5, reads=0, read_errors=0, approved=0, declined=0, reboots=reboots
    )
    verdict = evaluate(fresh, _after(read_errors=25), TOL)
    assert verdict.reasons[0] == "card-reader errors 0.0 % -> 2.5 % (+2.5 points, tolerance 2.0)"
