"""The rule engine: pure, incremental, one state per terminal.

No I/O and no clock of its own: the caller feeds messages with the time they arrived and
calls :meth:`RuleEngine.tick` now and then; the engine answers with :class:`Finding` s
(a rule began or stopped holding). A message re-evaluates only the rules that read a
field it changed (plus the rules whose windows are live); ``tick`` advances windows,
``for`` durations and absences.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Any

from pydantic import BaseModel

from posfleet.contract import (
    Channel,
    FaultEvent,
    HealthReport,
    Inventory,
    Message,
    State,
)
from posfleet.diagnostics.counter_window import CounterWindow
from posfleet.diagnostics.early_events import behind_the_health, not_overtaken, take_over
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.rule_evaluation import EngineStats, RuleJudge
from posfleet.diagnostics.rule_model import Escalation, Rule
from posfleet.diagnostics.terminal_state import Phase, TerminalState

REPORTED_FAULT_QUIET = timedelta(minutes=30)
"""A terminal-reported fault no rule covers resolves after this long without a repeat."""

REPORTED_PREFIX = "reported."

EVENT_WAIT = timedelta(minutes=15)
"""How long a fault event that a rule covers, reported before the rule's other inputs (the
terminal's first health report), may still be handed from its reported fault to the rule."""


def reported_fault_rule(event: FaultEvent) -> Rule:
    """The rule under which a fault event that no rule covers becomes an incident."""
    return Rule(
        id=f"{REPORTED_PREFIX}{event.code}",
        title=f"Terminal reported {event.code}",
        component=event.component,
        severity=event.severity,
        cause=event.detail or f"the terminal reported the fault {event.code}",
        remedy=("Ask the merchant to restart the terminal", "Run the self-test playbook"),
        escalation=Escalation.REMOTE_FIX,
        source="reported by the terminal",
    )


class RuleEngine:
    """Evaluates rules against a fleet's messages; not thread-safe, one per event loop."""

    def __init__(self, rules: Sequence[Rule] = ()) -> None:
        self.stats = EngineStats()
        self._judge = RuleJudge(self.stats)
        self._terminals: dict[str, TerminalState] = {}
        self._reported_rules: dict[str, Rule] = {}
        self._rules: dict[str, Rule] = {}
        self._by_input: dict[str, list[Rule]] = {}
        self._by_path: dict[str, list[Rule]] = {}
        self._windowed: list[Rule] = []
        self._counting: list[Rule] = []
        self._absence: list[Rule] = []
        self.replace_rules(rules)

    # -- rules ---------------------------------------------------------------------------

    @property
    def rules(self) -> list[Rule]:
        """The rules in force."""
        return list(self._rules.values())

    def replace_rules(self, rules: Sequence[Rule]) -> list[Finding]:
        """Put ``rules`` in force; returns CLEARED findings for rules that were removed.

        A rule kept under the same id keeps its per-terminal state (an open incident is
        not reopened by a reload); a changed rule is re-evaluated at the next message.
        """
        now_ids = {rule.id for rule in rules}
        findings: list[Finding] = []
        for old_id in set(self._rules) - now_ids:
            old = self._rules[old_id]
            for terminal_id, state in self._terminals.items():
                rule_state = state.rules.pop(old_id, None)
                if rule_state is not None and rule_state.phase is Phase.FIRING:
                    at = state.last_report_at or datetime.min
                    findings.append(Finding(FindingKind.CLEARED, terminal_id, old, at))
        self._rules = {rule.id: rule for rule in rules}
        by_input: dict[str, list[Rule]] = defaultdict(list)
        by_path: dict[str, list[Rule]] = defaultdict(list)
        for rule in rules:
            for name in rule.inputs:
                by_input[name].append(rule)
            for path in rule.input_paths:
                by_path[path].append(rule)
        self._by_input = dict(by_input)
        self._by_path = dict(by_path)
        self._windowed = [r for r in rules if r.increase or r.events]
        self._counting = [r for r in rules if r.increase]
        self._absence = [r for r in rules if r.absence_intervals is not None]
        _event_rules.cache_clear()
        return findings

    # -- messages ------------------------------------------------------------------------

    def observe(self, message: Message, now: datetime) -> list[Finding]:
        """Take one stored contract message that arrived at ``now``."""
        payload: BaseModel = message.payload
        terminal_id = message.topic.terminal_id
        channel = message.topic.channel
        if channel is Channel.HEALTH and isinstance(payload, HealthReport):
            return self.observe_health(terminal_id, payload, now)
        if channel is Channel.EVENT and isinstance(payload, FaultEvent):
            return self.observe_event(terminal_id, payload, now)
        if channel is Channel.STATE and isinstance(payload, State):
            return self.observe_state(terminal_id, payload, now)
        if channel is Channel.INVENTORY and isinstance(payload, Inventory):
            return self.observe_inventory(terminal_id, payload, now)
        return []

    def observe_health(
        self, terminal_id: str, report: HealthReport, now: datetime
    ) -> list[Finding]:
        """A health report: update the metrics and evaluate the rules that read them."""
        metrics = report.metrics.model_dump(mode="json", exclude_none=True)
        return self.observe_metrics(terminal_id, report.seq, report.interval_s, metrics, now)

    def observe_metrics(
        self, terminal_id: str, seq: int, interval_s: float, metrics: dict[str, Any], now: datetime
    ) -> list[Finding]:
        """A health report given as its sequence number, interval and metrics, the metrics
        as JSON values with ``None`` fields left out (what the store's sample holds)."""
        self.stats.messages += 1
        state = self._terminal(terminal_id)
        findings = self._heard_from(terminal_id, state, now)
        if state.last_seq is not None and seq < state.last_seq:
            # An outbox replay older than what we know: it must not roll the state back.
            return findings
        state.last_seq = seq
        state.interval_s = float(interval_s)
        changed = _changed_paths(state.metrics, metrics)
        uptime = metrics.get("uptime_s")
        if isinstance(uptime, int):
            if state.last_uptime_s is not None and uptime < state.last_uptime_s:
                state.boots += 1
                changed.add("boots")
            state.last_uptime_s = uptime
        state.metrics = metrics
        candidates = self._rules_reading(changed)
        for rule in self._windowed:
            rule_state = state.rules.get(rule.id)
            if rule_state is not None and rule_state.phase is not Phase.IDLE:
                candidates[rule.id] = rule
        variables = state.variables(now.date())
        # Every counter is sampled on every report, changed or not: a window needs its
        # baseline, and time passing without growth is information too.
        for rule in self._counting:
            self._sample_counters(rule, state, variables, changed, now)
        judged = not_overtaken(state, candidates.values(), seq)
        findings += self._judge.evaluate(terminal_id, state, judged, variables, now)
        if state.waiting_events:
            findings = self._hand_over(terminal_id, state, findings, seq, now)
        return findings

    def observe_event(self, terminal_id: str, event: FaultEvent, now: datetime) -> list[Finding]:
        """A fault event: count it, and open an incident for it if no rule covers it."""
        self.stats.messages += 1
        state = self._terminal(terminal_id)
        findings = self._heard_from(terminal_id, state, now)
        state.event_seq[event.code] = max(event.seq, state.event_seq.get(event.code, -1))
        rules = _event_rules(tuple(self._rules.values()), event.code)
        if rules:
            variables = state.variables(now.date())
            if self._can_judge(rules, variables):
                return findings + self._judge_event(terminal_id, state, event, rules, now)
            # The rules' other inputs are not reported yet (an event before the first
            # health report, which may be on its way in the other ingest lane): a reported
            # fault at once, handed to the rule when that report comes (see _hand_over).
            state.waiting_events.setdefault(event.code, now)
        state.events.append((now, event.code))
        return findings + self._reported(terminal_id, state, event, now)

    def _judge_event(
        self,
        terminal_id: str,
        state: TerminalState,
        event: FaultEvent,
        rules: Sequence[Rule],
        now: datetime,
    ) -> list[Finding]:
        """The event's rules judge it; one sent before the latest health report (see
        :func:`~posfleet.diagnostics.early_events.behind_the_health`) is judged again
        at once against that report, which already knows how the fault went on."""
        stale, judged = behind_the_health(state, event, rules)
        if not judged:
            return []  # a report sent after it already closed what it was about
        state.events.append((now, event.code))
        variables = state.variables(now.date())
        findings = self._judge.evaluate(terminal_id, state, judged, variables, now)
        if stale and findings:
            findings += self._judge.evaluate(terminal_id, state, judged, variables, now)
        return findings

    @staticmethod
    def _can_judge(rules: Sequence[Rule], variables: dict[str, Any]) -> bool:
        known = variables.keys() | {"increase", "events"}
        return any(r.when is None or r.when.variables <= known for r in rules)

    def _hand_over(
        self,
        terminal_id: str,
        state: TerminalState,
        findings: list[Finding],
        report_seq: int,
        now: datetime,
    ) -> list[Finding]:
        """Events that came before their rules' inputs, now that a health report brought
        them: the rules judge them and take over the reported faults they opened (see
        :mod:`posfleet.diagnostics.early_events`)."""
        variables = state.variables(now.date())
        for code in list(state.waiting_events):
            rules = _event_rules(tuple(self._rules.values()), code)
            if not rules:  # no rule covers it any more (rules reloaded): it stays reported
                del state.waiting_events[code]
                continue
            if not self._can_judge(rules, variables):
                continue
            del state.waiting_events[code]
            judged = not_overtaken(state, rules, report_seq)
            findings += self._judge.evaluate(terminal_id, state, judged, variables, now)
            reported = self._reported_rules.get(code)
            if state.reported.pop(code, None) is not None and reported is not None:
                self.stats.cleared += 1
                findings = take_over(findings, rules, reported, terminal_id, now)
        return findings

    @staticmethod
    def _expire_waiting(state: TerminalState, now: datetime) -> None:
        """After :data:`EVENT_WAIT` without its rule's inputs, a reported fault stays one."""
        for code, at in list(state.waiting_events.items()):
            if now - at >= EVENT_WAIT:
                del state.waiting_events[code]

    def _reported(
        self, terminal_id: str, state: TerminalState, event: FaultEvent, now: datetime
    ) -> list[Finding]:
        """The fault event as a reported fault of its own (no rule judges it)."""
        findings: list[Finding] = []
        rule = self._reported_rules.get(event.code)
        if rule is None or rule.severity != event.severity:
            rule = self._reported_rules[event.code] = reported_fault_rule(event)
        first = event.code not in state.reported
        state.reported[event.code] = now
        if first:
            self.stats.opened += 1
            facts = {
                "code": event.code,
                "detail": event.detail,
                "zvt_result_code": event.zvt_result_code,
            }
            findings.append(Finding(FindingKind.OPENED, terminal_id, rule, now, facts))
        return findings

    def observe_state(self, terminal_id: str, state_msg: State, now: datetime) -> list[Finding]:
        """A birth message or LWT: online is an input rules may read."""
        self.stats.messages += 1
        state = self._terminal(terminal_id)
        findings: list[Finding] = []
        if state_msg.online:
            findings = self._heard_from(terminal_id, state, now)
        if state.online != state_msg.online:
            state.online = state_msg.online
            variables = state.variables(now.date())
            findings += self._judge.evaluate(
                terminal_id, state, self._by_input.get("online", ()), variables, now
            )
        return findings

    def observe_inventory(
        self, terminal_id: str, inventory: Inventory, now: datetime
    ) -> list[Finding]:
        """What the terminal is: rules may read ``inventory.*``; firmware changes are noted."""
        self.stats.messages += 1
        state = self._terminal(terminal_id)
        previous = state.inventory.get("firmware_version")
        if previous is not None and previous != inventory.firmware_version:
            state.firmware_changed_at = now
        state.inventory = {
            **state.inventory,
            "model": inventory.model,
            "firmware_version": inventory.firmware_version,
            "site_id": inventory.site_id,
            "merchant_id": inventory.merchant_id,
        }
        return self._inventory_changed(terminal_id, state, now)

    def set_intended_firmware(
        self, terminal_id: str, version: str | None, now: datetime
    ) -> list[Finding]:
        """The firmware a rollout wants this terminal on (None: no intent)."""
        state = self._terminal(terminal_id)
        inventory = dict(state.inventory)
        if version is None:
            inventory.pop("intended_firmware", None)
        else:
            inventory["intended_firmware"] = version
        state.inventory = inventory
        return self._inventory_changed(terminal_id, state, now)

    def firmware_changed_at(self, terminal_id: str) -> datetime | None:
        """When this engine saw the terminal's firmware version change, if it did."""
        state = self._terminals.get(terminal_id)
        return None if state is None else state.firmware_changed_at

    def _inventory_changed(
        self, terminal_id: str, state: TerminalState, now: datetime
    ) -> list[Finding]:
        variables = state.variables(now.date())
        rules = self._by_input.get("inventory", ())
        return self._judge.evaluate(terminal_id, state, rules, variables, now)

    def tick(self, now: datetime) -> list[Finding]:
        """Let time pass: windows slide, ``for`` durations elapse, absences grow."""
        findings: list[Finding] = []
        for terminal_id, state in self._terminals.items():
            due: dict[str, Rule] = {}
            for rule_id, rule_state in state.rules.items():
                if rule_state.phase is Phase.IDLE:
                    continue
                rule = self._rules.get(rule_id)
                if rule is not None and (rule.windowed or rule_state.phase is Phase.PENDING):
                    due[rule_id] = rule
            for rule in self._absence:
                due[rule.id] = rule
            # The clock judges against the latest report as well: one an event overtook
            # cannot clear what the event set going (early_events).
            judged = not_overtaken(
                state, due.values(), -1 if state.last_seq is None else state.last_seq
            )
            if judged:
                variables = state.variables(now.date())
                findings += self._judge.evaluate(terminal_id, state, judged, variables, now)
            if state.waiting_events:
                self._expire_waiting(state, now)
            for code, last in list(state.reported.items()):
                if now - last >= REPORTED_FAULT_QUIET:
                    del state.reported[code]
                    rule = self._reported_rules.get(code)
                    if rule is not None:
                        self.stats.cleared += 1
                        findings.append(Finding(FindingKind.CLEARED, terminal_id, rule, now))
        return findings

    def assume_firing(self, terminal_id: str, rule_id: str, since: datetime) -> None:
        """Start from a known open incident (after a restart), so that it can clear."""
        state = self._terminal(terminal_id)
        if rule_id.startswith(REPORTED_PREFIX):
            state.reported[rule_id.removeprefix(REPORTED_PREFIX)] = since
            return
        if rule_id in self._rules:
            rule_state = state.rule(rule_id)
            rule_state.phase, rule_state.since = Phase.FIRING, since

    def forget(self, terminal_id: str) -> None:
        """Drop everything known about a terminal (decommissioned)."""
        self._terminals.pop(terminal_id, None)

    def firing(self, terminal_id: str) -> list[str]:
        """Ids of the rules currently holding for ``terminal_id``."""
        state = self._terminals.get(terminal_id)
        if state is None:
            return []
        ids = [rid for rid, rs in state.rules.items() if rs.phase is Phase.FIRING]
        return ids + [f"{REPORTED_PREFIX}{code}" for code in state.reported]

    # -- internals -----------------------------------------------------------------------

    def _terminal(self, terminal_id: str) -> TerminalState:
        state = self._terminals.get(terminal_id)
        if state is None:
            state = self._terminals[terminal_id] = TerminalState()
        return state

    def _heard_from(self, terminal_id: str, state: TerminalState, now: datetime) -> list[Finding]:
        """Note a sign of life; absence rules that were firing clear at once."""
        state.last_report_at = now
        if not self._absence:
            return []
        held = [r for r in self._absence if r.id in state.rules]
        if not held:
            return []
        return self._judge.evaluate(terminal_id, state, held, state.variables(now.date()), now)

    def _rules_reading(self, changed: Iterable[str]) -> dict[str, Rule]:
        found: dict[str, Rule] = {}
        for path in changed:
            for rule in self._by_path.get(path, ()):
                found[rule.id] = rule
        return found

    def _sample_counters(
        self,
        rule: Rule,
        state: TerminalState,
        variables: dict[str, Any],
        changed: set[str],
        now: datetime,
    ) -> None:
        rule_state = state.rule(rule.id)
        for name, expr in rule.increase:
            window = rule_state.counters.get(name)
            if window is not None and window.last is not None and changed.isdisjoint(expr.paths):
                # Unchanged inputs, unchanged counter: nothing to evaluate, nothing to
                # record (a window keeps only the points where its counter moved).
                continue
            if not expr.variables <= variables.keys():
                continue
            try:
                value = float(expr.evaluate(variables))
            except (ValueError, TypeError) as exc:
                self._judge.condition_failed(rule, expr.source, exc)
                continue
            if window is None:
                window = rule_state.counters[name] = CounterWindow(rule.window)
            window.add(now, value)


def _changed_paths(old: dict[str, Any], new: dict[str, Any]) -> set[str]:
    """Top-level metric names that changed, and for objects their changed fields too."""
    changed: set[str] = set()
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        changed.add(key)
        if isinstance(before, dict) and isinstance(after, dict):
            for sub in before.keys() | after.keys():
                if before.get(sub) != after.get(sub):
                    changed.add(f"{key}.{sub}")
        elif isinstance(before, dict) or isinstance(after, dict):
            for sub in before if isinstance(before, dict) else after or {}:
                changed.add(f"{key}.{sub}")
    return changed


@lru_cache(maxsize=1024)
def _event_rules(rules: tuple[Rule, ...], code: str) -> tuple[Rule, ...]:
    return tuple(
        rule
        for rule in rules
        if any(fnmatchcase(code, p) for count in rule.events for p in count.codes)
    )
