"""Reading rule files: YAML with line numbers, CEL compiled up front, every error located.

A rule file is a mapping with one key, ``rules``, holding a list of rules (see
``docs/diagnostics.md``). Loading either returns every rule of the file or raises
:class:`RuleFileError` naming the file, the line and the reason: a file is never half
loaded, which is what lets a reload keep the running rules when a new file is bad.

A rule's probable cause and remedy steps come from its knowledge-base entry
(:mod:`posfleet.knowledge.builtin_entries`: the entry of the rule's id, or the one ``kb:``
names) unless the rule writes its own ``cause`` and ``remedy``, as a site's rule may.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

import yaml

from posfleet.contract import Component, Severity
from posfleet.diagnostics.cel_expressions import CelSyntaxError, Expression
from posfleet.diagnostics.durations import parse_duration
from posfleet.diagnostics.errors import RuleFileError
from posfleet.diagnostics.rule_model import (
    CorrelateBy,
    Escalation,
    EventCount,
    FixLocation,
    Rule,
)
from posfleet.knowledge.builtin_entries import ENTRY_ID, builtin_entries

_E = TypeVar("_E", Component, Severity, Escalation, FixLocation)

RULE_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
BUILTIN_PACKAGE = "posfleet.diagnostics.rules"

_KNOWN_KEYS = {
    "id",
    "title",
    "component",
    "severity",
    "when",
    "for",
    "clear_when",
    "window",
    "increase",
    "events",
    "absence_intervals",
    "cause",
    "remedy",
    "escalation",
    "correlate",
    "playbook",
    "fixed_by",
    "kb",
}
_REQUIRED = ("id", "title", "component", "severity", "escalation")


class _Located:
    """A YAML node with the file it came from, so every error can say where."""

    def __init__(self, path: str, node: yaml.Node) -> None:
        self.path = path
        self.node = node

    @property
    def line(self) -> int:
        return self.node.start_mark.line + 1

    def error(self, reason: str) -> RuleFileError:
        return RuleFileError(self.path, self.line, reason)

    def mapping(self, what: str) -> dict[str, _Located]:
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"{what} must be a mapping")
        out: dict[str, _Located] = {}
        for key, value in self.node.value:
            if not isinstance(key, yaml.ScalarNode):
                raise _Located(self.path, key).error("keys must be plain names")
            if key.value in out:
                raise _Located(self.path, key).error(f"duplicate key {key.value!r}")
            out[key.value] = _Located(self.path, value)
        return out

    def sequence(self, what: str) -> list[_Located]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"{what} must be a list")
        return [_Located(self.path, item) for item in self.node.value]

    def text(self, what: str) -> str:
        if not isinstance(self.node, yaml.ScalarNode) or self.node.value == "":
            raise self.error(f"{what} must be a non-empty text")
        return str(self.node.value)

    def scalar(self, what: str) -> Any:
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error(f"{what} must be a single value")
        # Resolve the scalar the way YAML would (numbers, booleans) without building
        # arbitrary objects: the safe constructor only knows plain types. It rejects an
        # unknown tag with a YAMLError, but a bad value of a known one (2024-02-30,
        # !!bool maybe, !!float abc) with the built-in error of the conversion.
        try:
            return yaml.SafeLoader("").construct_object(self.node)
        except (yaml.YAMLError, ValueError, KeyError, TypeError):
            raise self.error(f"{what} {self.node.value!r} is not a value YAML can read") from None

    def texts(self, what: str) -> tuple[str, ...]:
        if isinstance(self.node, yaml.ScalarNode):
            return (self.text(what),)
        return tuple(item.text(f"each entry of {what}") for item in self.sequence(what))


def parse_rules(text: str, path: str | Path = "<rules>") -> list[Rule]:
    """Every rule in ``text``; raises :class:`RuleFileError` at the first problem."""
    name = str(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise RuleFileError(name, line, f"not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise RuleFileError(name, None, f"not valid YAML: {exc}") from exc
    except RecursionError:
        # The composer recurses once per nesting level: [[[[... deep enough fails here.
        raise RuleFileError(name, None, "not valid YAML: nested too deeply") from None
    if root is None:
        raise RuleFileError(name, 1, "the file is empty; expected a 'rules:' list")
    top = _Located(name, root).mapping("the file")
    for key_node, _ in root.value:
        if key_node.value != "rules":
            raise _Located(name, key_node).error(f"unknown top-level key {key_node.value!r}")
    if "rules" not in top:
        raise RuleFileError(name, 1, "missing the top-level 'rules:' list")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for item in top["rules"].sequence("'rules'"):
        rule = _rule(item)
        if rule.id in seen:
            raise item.error(f"rule id {rule.id!r} already defined on line {seen[rule.id]}")
        seen[rule.id] = item.line
        rules.append(rule)
    return rules


def load_rule_file(path: Path) -> list[Rule]:
    """Read and check one rule file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RuleFileError(path, None, f"cannot read the file: {exc}") from exc
    return parse_rules(text, path)


def load_builtin_rules() -> list[Rule]:
    """The rule pack shipped with posfleet (``posfleet/diagnostics/rules/*.yaml``)."""
    rules: list[Rule] = []
    for entry in sorted(resources.files(BUILTIN_PACKAGE).iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            rules.extend(parse_rules(entry.read_text(encoding="utf-8"), f"builtin:{entry.name}"))
    return merge_rule_sets([rules])


def load_rule_paths(paths: Iterable[Path]) -> list[Rule]:
    """Rules from files and folders of ``*.yaml`` files, in name order."""
    sets: list[list[Rule]] = []
    for path in paths:
        files = sorted(path.glob("*.yaml")) if path.is_dir() else [path]
        sets.extend(load_rule_file(file) for file in files)
    return merge_rule_sets(sets)


def merge_rule_sets(sets: Sequence[Sequence[Rule]]) -> list[Rule]:
    """Concatenate rule sets; a later rule with the same id replaces an earlier one.

    That is how a site overrides a built-in rule: same id in its own file.
    """
    merged: dict[str, Rule] = {}
    for rules in sets:
        for rule in rules:
            merged[rule.id] = rule
    return list(merged.values())


def _rule(item: _Located) -> Rule:
    fields = item.mapping("each rule")
    for key, value in fields.items():
        if key not in _KNOWN_KEYS:
            raise value.error(f"unknown key {key!r}; known keys: {', '.join(sorted(_KNOWN_KEYS))}")
    for key in _REQUIRED:
        if key not in fields:
            raise item.error(f"rule is missing {key!r}")
    rule_id = fields["id"].text("id")
    if not RULE_ID.match(rule_id) or len(rule_id) > 96:
        raise fields["id"].error(f"rule id {rule_id!r} must be dotted lower-case words")
    when = _expression(fields, "when")
    absence = None
    if "absence_intervals" in fields:
        absence = _positive_number(fields["absence_intervals"], "absence_intervals")
    if when is None and absence is None:
        raise item.error(f"rule {rule_id!r} needs a 'when' condition or 'absence_intervals'")
    increase: list[tuple[str, Expression]] = []
    if "increase" in fields:
        for name, expr in fields["increase"].mapping("'increase'").items():
            _check_name(expr, name)
            increase.append((name, _compile(expr, f"increase.{name}")))
    events: list[EventCount] = []
    if "events" in fields:
        for name, codes in fields["events"].mapping("'events'").items():
            _check_name(codes, name)
            events.append(EventCount(name, codes.texts(f"events.{name}")))
    _check_references(fields, increase, events)
    cause, remedy, kb = _guidance(item, fields, rule_id)
    return Rule(
        id=rule_id,
        title=fields["title"].text("title"),
        component=_enum(fields["component"], Component, "component"),
        severity=_enum(fields["severity"], Severity, "severity"),
        cause=cause,
        remedy=remedy,
        kb=kb,
        escalation=_enum(fields["escalation"], Escalation, "escalation"),
        when=when,
        clear_when=_expression(fields, "clear_when"),
        hold_for=_duration(fields, "for"),
        window=_duration(fields, "window", default="10m"),
        increase=tuple(increase),
        events=tuple(events),
        absence_intervals=absence,
        correlate=tuple(
            _enum_text(fields["correlate"], value, CorrelateBy, "correlate")
            for value in (fields["correlate"].texts("correlate") if "correlate" in fields else ())
        ),
        playbook=fields["playbook"].text("playbook") if "playbook" in fields else None,
        fixed_by=(
            _enum(fields["fixed_by"], FixLocation, "fixed_by") if "fixed_by" in fields else None
        ),
        source=f"{item.path}:{item.line}",
    )


def _guidance(
    item: _Located, fields: dict[str, _Located], rule_id: str
) -> tuple[str, tuple[str, ...], str | None]:
    """The rule's probable cause, remedy steps and knowledge entry id.

    The built-in pack keeps cause and remedy in the knowledge base (the entry of the rule's
    id, or the one ``kb:`` names); a site's rule may still write its own, which then win.
    """
    named = fields["kb"].text("kb") if "kb" in fields else None
    if named is not None and not ENTRY_ID.match(named):
        raise fields["kb"].error(f"kb {named!r} must be a dotted lower-case entry id")
    entry = builtin_entries().get(named or rule_id)
    if named is not None and entry is None:
        raise fields["kb"].error(f"the knowledge base has no entry {named!r}")
    given = [key for key in ("cause", "remedy") if key in fields]
    if len(given) == 1:
        other = "remedy" if given == ["cause"] else "cause"
        raise item.error(f"rule {rule_id!r} gives {given[0]!r} but is missing {other!r}")
    kb = entry.id if entry is not None else None
    if given:
        return fields["cause"].text("cause").strip(), fields["remedy"].texts("remedy"), kb
    if entry is None:
        raise item.error(
            f"rule {rule_id!r} is missing 'cause' and 'remedy', and the knowledge base has "
            f"no entry {rule_id!r} to take them from (name one with 'kb:')"
        )
    return entry.cause, entry.remedy, kb


def _expression(fields: dict[str, _Located], key: str) -> Expression | None:
    if key not in fields:
        return None
    return _compile(fields[key], key)


def _compile(node: _Located, what: str) -> Expression:
    source = node.text(what)
    try:
        return Expression.compile(source)
    except CelSyntaxError as exc:
        raise node.error(f"{what} is not valid CEL: {exc}") from None


def _check_references(
    fields: dict[str, _Located],
    increase: list[tuple[str, Expression]],
    events: list[EventCount],
) -> None:
    # A condition naming increase.x or events.x that the rule does not declare would
    # fail at every evaluation; catch it while the author is still looking at the file.
    declared = {"increase": {n for n, _ in increase}, "events": {e.name for e in events}}
    for key in ("when", "clear_when"):
        if key not in fields:
            continue
        source = fields[key].text(key)
        for group, names in declared.items():
            for used in re.findall(rf"\b{group}\.([a-z_][a-z0-9_]*)", source):
                if used not in names:
                    raise fields[key].error(
                        f"{key} reads {group}.{used} but the rule declares no {group} {used!r}"
                    )


def _check_name(node: _Located, name: str) -> None:
    if not NAME.match(name):
        raise node.error(f"{name!r} must be a lower-case name")


def _duration(fields: dict[str, _Located], key: str, default: str = "0s") -> Any:
    if key not in fields:
        return parse_duration(default)
    try:
        return parse_duration(fields[key].scalar(key))
    except ValueError as exc:
        raise fields[key].error(f"{key}: {exc}") from None


def _positive_number(node: _Located, what: str) -> float:
    value = node.scalar(what)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise node.error(f"{what} must be a positive number, not {value!r}")
    return float(value)


def _enum(node: _Located, enum: type[_E], what: str) -> _E:
    value: _E = _enum_text(node, node.text(what), enum, what)
    return value


def _enum_text(node: _Located, value: str, enum: type[Any], what: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        raise node.error(f"{what} {value!r} is not one of: {allowed}") from None
