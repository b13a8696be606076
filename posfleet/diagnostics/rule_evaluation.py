"""Judging one rule on one terminal: its variables, its conditions, its phase's edge.

The part of the rule engine that knows what a rule means (``when``, ``clear_when``,
``for``, windows of counters and events, absences) and turns a change of phase into a
:class:`Finding`; :mod:`posfleet.diagnostics.rule_engine` decides which rules to judge
when, from the messages and the clock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.terminal_state import Phase, RuleState, TerminalState

log = logging.getLogger(__name__)


@dataclass(slots=True)
class EngineStats:
    """Counters of one engine: work done, and conditions that could not be evaluated."""

    messages: int = 0
    evaluations: int = 0
    condition_errors: int = 0
    opened: int = 0
    cleared: int = 0


class RuleJudge:
    """Evaluates rules against a terminal's state and moves their phases, counting into
    the engine's :class:`EngineStats`."""

    def __init__(self, stats: EngineStats) -> None:
        self.stats = stats

    def evaluate(
        self,
        terminal_id: str,
        state: TerminalState,
        rules: Iterable[Rule],
        base: dict[str, Any],
        now: datetime,
    ) -> list[Finding]:
        """Judge ``rules`` on ``state`` with the common variables ``base``: the findings
        of those whose phase reached an edge (opened or cleared)."""
        findings: list[Finding] = []
        for rule in rules:
            rule_state = state.rule(rule.id)
            variables = self._rule_variables(rule, rule_state, state, base, now)
            holds = self._holds(rule, rule.when, state, variables, now)
            if holds is None:
                continue
            self.stats.evaluations += 1
            finding = self._advance(
                terminal_id,
                rule=rule,
                rule_state=rule_state,
                state=state,
                variables=variables,
                holds=holds,
                now=now,
            )
            if finding is not None:
                findings.append(finding)
        return findings

    def _rule_variables(
        self,
        rule: Rule,
        rule_state: RuleState,
        state: TerminalState,
        base: dict[str, Any],
        now: datetime,
    ) -> dict[str, Any]:
        if not rule.increase and not rule.events:
            return base
        variables = dict(base)
        start = now - rule.window
        variables["increase"] = {
            name: (w.increase(now) if (w := rule_state.counters.get(name)) else 0.0)
            for name, _ in rule.increase
        }
        variables["events"] = {
            count.name: state.count_events(count.codes, start, rule_state.cleared_at)
            for count in rule.events
        }
        return variables

    def _holds(
        self,
        rule: Rule,
        expr: Any,
        state: TerminalState,
        variables: dict[str, Any],
        now: datetime,
    ) -> bool | None:
        """The condition's truth; None when it cannot be known (inputs not reported)."""
        absence = rule.absence_intervals
        if absence is not None and expr is rule.when and not state.absent(now, absence):
            return False
        if expr is None:
            return True
        if not expr.variables <= variables.keys():
            return None
        try:
            return bool(expr.evaluate(variables))
        except ValueError as exc:
            self.condition_failed(rule, expr.source, exc)
            return None

    def _advance(
        self,
        terminal_id: str,
        *,
        rule: Rule,
        rule_state: RuleState,
        state: TerminalState,
        variables: dict[str, Any],
        holds: bool,
        now: datetime,
    ) -> Finding | None:
        if rule_state.phase is Phase.FIRING:
            if rule.clear_when is not None:
                cleared = self._holds(rule, rule.clear_when, state, variables, now)
                if cleared is None:
                    return None
            else:
                cleared = not holds
            if not cleared:
                return None
            rule_state.phase, rule_state.since, rule_state.cleared_at = Phase.IDLE, None, now
            rule_state.cleared_seq = state.last_seq
            self.stats.cleared += 1
            return Finding(FindingKind.CLEARED, terminal_id, rule, now, facts_of(rule, variables))
        if not holds:
            rule_state.phase, rule_state.since = Phase.IDLE, None
            return None
        if rule_state.phase is Phase.IDLE:
            rule_state.phase, rule_state.since = Phase.PENDING, now
        since = rule_state.since or now
        if now - since < rule.hold_for:
            return None
        rule_state.phase = Phase.FIRING
        self.stats.opened += 1
        return Finding(FindingKind.OPENED, terminal_id, rule, now, facts_of(rule, variables))

    def condition_failed(self, rule: Rule, source: str, exc: Exception) -> None:
        """Count a condition that raised, and log the first hundred."""
        self.stats.condition_errors += 1
        # Once per rule and reason is enough for the log; the counter keeps the total.
        if self.stats.condition_errors <= 100:
            log.warning("rule %s (%s): cannot evaluate %r: %s", rule.id, rule.source, source, exc)


def facts_of(rule: Rule, variables: dict[str, Any]) -> dict[str, Any]:
    """The values the rule read, kept on the incident so staff see why it fired."""
    facts: dict[str, Any] = {
        name: variables[name] for name in sorted(rule.inputs) if name in variables
    }
    for group in ("increase", "events"):
        if group in variables:
            facts[group] = variables[group]
    return facts
