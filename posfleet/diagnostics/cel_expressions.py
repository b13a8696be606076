"""CEL conditions: compiled once, evaluated against a plain dict of variables.

The Rust-backed ``common-expression-language`` package does the parsing and evaluation;
this module only wraps its errors and reports which variables an expression reads, which
is how the engine knows which rules a changed input concerns.

One shape is evaluated here without the library: a field or a sum of fields
(``card_reader.chip.reads + card_reader.magstripe.reads``), the form of most counter
expressions, which the engine evaluates for every counting rule on every report. Handing
the library the nested objects those fields sit in costs several microseconds a time;
walking the dicts costs a fraction of one. Only numbers of one kind are summed here;
anything else (a missing field, a string, an int plus a double, a sum past 64 bits) goes
to the library, so the value or the error is always CEL's
(``tests/unit/test_cel_expressions.py`` checks that both ways agree).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel


class CelSyntaxError(ValueError):
    """The text is not a valid CEL expression."""


@dataclass(frozen=True)
class Expression:
    """A compiled CEL expression and the top-level variables it reads."""

    source: str
    program: Any = field(repr=False, compare=False)
    variables: frozenset[str]
    paths: frozenset[str] = frozenset()
    """Fields read, at most two levels deep (``printer.status``, ``card_reader.chip``)."""
    terms: tuple[tuple[str, ...], ...] | None = field(default=None, repr=False, compare=False)
    """For a field or a sum of fields: each field's path, evaluated without the library."""

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Compile ``source``; raises :class:`CelSyntaxError` with the parser's reason."""
        try:
            program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise CelSyntaxError(_first_line(str(exc))) from exc
        variables = frozenset(program.variables())
        return cls(source, program, variables, _paths(source, variables), _sum_terms(source))

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The expression's value; raises ``ValueError`` when it cannot be computed."""
        if self.terms is not None:
            value = _sum_of_fields(self.terms, variables)
            if value is not _ASK_CEL:
                return value
        # Only what the expression reads: the library converts every value it is given
        # into CEL values, and a whole health report costs ten times the evaluation.
        context = {name: variables[name] for name in self.variables if name in variables}
        try:
            return self.program.execute(context)
        # The library reports type mismatches, unknown names, missing keys and int
        # overflow with different built-in exceptions; to a rule author they are all
        # "cannot evaluate" (an overflow once escaped as OverflowError: a terminal's
        # counters past 64 bits stopped the diagnostics hook's batch).
        except (TypeError, ValueError, KeyError, RuntimeError, ArithmeticError) as exc:
            raise ValueError(_first_line(str(exc))) from exc


_PATH = re.compile(r"(?<![\w.\"'])([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)(\s*\()?")


def _paths(source: str, variables: frozenset[str]) -> frozenset[str]:
    """The dotted fields ``source`` reads, cut to two levels; a whole variable if unsure.

    The engine re-evaluates a rule only when one of these changed, so erring towards
    a shorter (wider) path costs an evaluation, never a missed change.
    """
    found: set[str] = set()
    for match in _PATH.finditer(source):
        name, tail, call = match.group(1), match.group(2), match.group(3)
        if name not in variables:
            continue
        parts = [p for p in tail.split(".") if p]
        if call and parts:
            parts.pop()  # a method call, not a field: x.startsWith(...)
        found.add(".".join([name, *parts[:1]]))
    return frozenset(found | {v for v in variables if not any(f.split(".")[0] == v for f in found)})


_FIELD = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_SUM = re.compile(rf"^\s*{_FIELD}(?:\s*\+\s*{_FIELD})*\s*$")
_NOT_FIELDS = frozenset({"true", "false", "null", "in"})
_INT64 = (-(2**63), 2**63 - 1)
_ASK_CEL = object()


def _sum_terms(source: str) -> tuple[tuple[str, ...], ...] | None:
    """The fields of ``a.b + c.d``-shaped sources; None for anything else."""
    if _SUM.match(source) is None:
        return None
    terms = tuple(tuple(term.strip().split(".")) for term in source.split("+"))
    if any(part in _NOT_FIELDS for term in terms for part in term):
        return None
    return terms


def _sum_of_fields(terms: tuple[tuple[str, ...], ...], variables: Mapping[str, Any]) -> Any:
    """The sum of the fields when all are numbers of one kind and it fits CEL's int;
    :data:`_ASK_CEL` for anything else (a missing field, a string, an int plus a double,
    an overflow), so that the library gives its own value or error."""
    total: Any = None
    for path in terms:
        value: Any = variables
        for part in path:
            if not isinstance(value, Mapping) or part not in value:
                return _ASK_CEL
            value = value[part]
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _ASK_CEL
        if total is None:
            total = value
        elif type(total) is not type(value):
            return _ASK_CEL
        else:
            total += value
    if isinstance(total, int) and not _INT64[0] <= total <= _INT64[1]:
        return _ASK_CEL
    return total


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else "invalid expression"
