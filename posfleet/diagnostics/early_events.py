"""Fault events that overtake the health reports sent before them.

The ingest's fast lane hands over a fault event at once, while the health reports the
terminal sent just before it may still be queued in the bulk lane. Three rules follow,
all pure and used by the rule engine:

- a health report older than an event (a lower ``seq``) cannot clear what that event
  set going, nor can the clock judging against that report: only a report the terminal
  sent after the event knows the fault is gone;
- an event that came before any health report at all opened a reported fault at once;
  when the report comes and the event's rule fires, the rule *takes over* that incident
  (one incident, now with the rule's cause and remedy) instead of a second one opening
  while the first closes;
- an event that comes in *after* a health report the terminal sent later than it is
  judged against that report: its incident opens and, if the report says the fault is
  gone, resolves at once; where the rule already opened and resolved after the event's
  ``seq``, the event adds nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from posfleet.contract import FaultEvent
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.rule_model import Rule
from posfleet.diagnostics.terminal_state import Phase, TerminalState

NOT_FROM_THE_REPORT = frozenset({"events"})
"""Inputs a health report does not carry: a condition reading only these clears by
itself as its window slides, whatever report the terminal sent last."""


def not_overtaken(state: TerminalState, rules: Iterable[Rule], seq: int) -> list[Rule]:
    """The rules a health report with ``seq`` (or the clock, judging against it) may
    judge: not one that an event sent after this report already set going, where what
    clears it reads the report: only a later report can say the fault is gone."""
    judged = []
    for rule in rules:
        rule_state = state.rules.get(rule.id)
        if (
            rule_state is not None
            and rule_state.phase is not Phase.IDLE
            and _clears_on_the_report(rule)
        ):
            newest = max(
                (state.event_seq.get(code, -1) for count in rule.events for code in count.codes),
                default=-1,
            )
            if newest > seq:
                continue
        judged.append(rule)
    return judged


def _clears_on_the_report(rule: Rule) -> bool:
    clearing = rule.clear_when if rule.clear_when is not None else rule.when
    return clearing is None or not clearing.variables <= NOT_FROM_THE_REPORT


def behind_the_health(
    state: TerminalState, event: FaultEvent, rules: Iterable[Rule]
) -> tuple[bool, list[Rule]]:
    """Whether ``event`` was sent before the latest health report, and the rules that
    should judge it: all of them, except, for such a late event, those that cleared on a
    report sent after it (that report already knew the fault was over)."""
    latest = state.last_seq
    if latest is None or event.seq >= latest:
        return False, list(rules)
    judged = []
    for rule in rules:
        rule_state = state.rules.get(rule.id)
        if rule_state is not None and (rule_state.cleared_seq or -1) > event.seq:
            continue
        judged.append(rule)
    return True, judged


def take_over(
    findings: list[Finding],
    rules: Iterable[Rule],
    reported: Rule,
    terminal_id: str,
    now: datetime,
) -> list[Finding]:
    """``findings`` with the opening of one of ``rules`` turned into a take-over of the
    ``reported`` fault's incident; where none of them opened, the reported fault clears."""
    covering = {rule.id for rule in rules}
    for index, finding in enumerate(findings):
        if finding.kind is FindingKind.OPENED and finding.rule.id in covering:
            findings[index] = Finding(
                FindingKind.TAKEN_OVER,
                terminal_id,
                finding.rule,
                finding.at,
                finding.facts,
                replaces=reported,
            )
            return findings
    findings.append(Finding(FindingKind.CLEARED, terminal_id, reported, now))
    return findings
