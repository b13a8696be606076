"""What travels between the diagnostics service and its rule worker process.

The service (:class:`~posfleet.diagnostics.rule_process.RuleProcess`) sends requests,
the worker (:mod:`~posfleet.diagnostics.rule_worker`) answers each with an
:class:`EngineAnswer`. Frames are those of the store writer's pipe
(:mod:`~posfleet.pipe_frames`: a length and a pickle, between a process and its own
child). Health reports cross as the store's
:class:`~posfleet.store.report_batch.Sample` (a tuple with the metrics as JSON text: a
tenth of the cost of pickling the model); everything else as the decoded message.
Findings cross with the rule's id, not the rule: the service holds the same rules, and
a compiled rule costs a compilation to unpickle. Only the rules the engine makes for
reported faults, which the service cannot know, cross whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from posfleet.contract import Message
from posfleet.diagnostics.findings import Finding, FindingKind
from posfleet.diagnostics.rule_evaluation import EngineStats
from posfleet.diagnostics.rule_model import Rule
from posfleet.store.report_batch import Sample

WireItem = Sample | Message
"""One stored message for the engine: a health report's sample, or the message."""


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """The hello: what the worker needs before the first request."""

    log_level: int = logging.WARNING
    rules: tuple[Rule, ...] = ()


class WireFinding(NamedTuple):
    """A :class:`~posfleet.diagnostics.findings.Finding` with its rules by id."""

    kind: FindingKind
    terminal_id: str
    rule: str | Rule
    at: datetime
    facts: dict[str, Any]
    replaces: str | Rule | None


@dataclass(slots=True)
class EngineAnswer:
    """What one request to the worker produced."""

    findings: list[WireFinding] = field(default_factory=list)
    firmware_changes: dict[str, datetime] = field(default_factory=dict)
    """Terminals whose firmware version the engine saw change, and when."""
    cpu_seconds: float = 0.0
    """CPU time the engine spent on the request."""
    stats: EngineStats = field(default_factory=EngineStats)
    """The engine's counters after the request."""


def _ref(rule: Rule, known: frozenset[str]) -> str | Rule:
    return rule.id if rule.id in known else rule


def to_wire(finding: Finding, known: frozenset[str]) -> WireFinding:
    """``finding`` for the pipe; ``known`` are the ids of the rules both ends hold."""
    replaces = None if finding.replaces is None else _ref(finding.replaces, known)
    return WireFinding(
        finding.kind,
        finding.terminal_id,
        _ref(finding.rule, known),
        finding.at,
        finding.facts,
        replaces,
    )


def _rule(ref: str | Rule, rules: dict[str, Rule]) -> Rule | None:
    return ref if isinstance(ref, Rule) else rules.get(ref)


def from_wire(wire: WireFinding, rules: dict[str, Rule]) -> Finding | None:
    """The finding again, with the service's own rules; None if the rule is gone (the
    rules were replaced while the request was under way)."""
    rule = _rule(wire.rule, rules)
    replaces = None if wire.replaces is None else _rule(wire.replaces, rules)
    if rule is None or (wire.replaces is not None and replaces is None):
        return None
    return Finding(wire.kind, wire.terminal_id, rule, wire.at, wire.facts, replaces)
