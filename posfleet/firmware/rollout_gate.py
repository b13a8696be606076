"""The business-health gate: did a wave's firmware make the shops' day worse? Pure.

After a wave has soaked, the store (:mod:`posfleet.firmware.rollout_health`) counts the
updated terminals' card reads, payments and reboots over the soak window (``after``) and
the same terminals over a window of the same length before their update (``before``,
their own baseline). :func:`evaluate` compares the two:

- card-reader error rate and decline rate: a rise of more than the tolerance in
  **percentage points** is a regression (1.2 % -> 9.8 % is +8.6 points);
- reboots per terminal: a rise of more than the tolerance (reboots, not points).

A fall is never a regression, and a rate with nothing to measure after the update (no
reads, no payments) is not judged; a baseline with nothing measured counts as 0 %, so
errors after the update are judged against none before it. Fewer than
``min_terminals`` updated terminals with figures fails the gate: a gate that cannot see
must not wave a firmware through.
"""

from __future__ import annotations

from posfleet.firmware.rollout_model import GateTolerances, GateVerdict, HealthFigures

_EPSILON = 1e-9
"""Rounding slack: 3.2 % - 1.2 % is 2.0000000000000004 points, which is 2.0."""


def _points(rate: float) -> float:
    return rate * 100.0


def evaluate(before: HealthFigures, after: HealthFigures, tol: GateTolerances) -> GateVerdict:
    """The gate's verdict for ``after`` against ``before`` with tolerances ``tol``.

    Each regression is one sentence naming the figures, e.g.
    ``card-reader errors 1.2 % -> 9.8 % (+8.6 points, tolerance 2.0)``.
    """
    reasons: list[str] = []
    if after.terminals < tol.min_terminals:
        reasons.append(
            f"only {after.terminals} updated terminal{'s' if after.terminals != 1 else ''} "
            f"reported figures (the gate needs {tol.min_terminals}); it cannot judge"
        )
        return GateVerdict(False, tuple(reasons), before, after)
    if after.reads:
        was, now = _points(before.reader_error_rate), _points(after.reader_error_rate)
        rise = now - was
        if rise > tol.reader_error_rate_points + _EPSILON:
            reasons.append(
                f"card-reader errors {was:.1f} % -> {now:.1f} % "
                f"(+{rise:.1f} points, tolerance {tol.reader_error_rate_points:.1f})"
            )
    if after.approved + after.declined:
        was, now = _points(before.decline_rate), _points(after.decline_rate)
        rise = now - was
        if rise > tol.decline_rate_points + _EPSILON:
            reasons.append(
                f"declines {was:.1f} % -> {now:.1f} % "
                f"(+{rise:.1f} points, tolerance {tol.decline_rate_points:.1f})"
            )
    was, now = before.reboots_per_terminal, after.reboots_per_terminal
    rise = now - was
    if rise > tol.reboots_per_terminal + _EPSILON:
        reasons.append(
            f"reboots per terminal {was:.2f} -> {now:.2f} "
            f"(+{rise:.2f}, tolerance {tol.reboots_per_terminal:.2f})"
        )
    return GateVerdict(not reasons, tuple(reasons), before, after)
