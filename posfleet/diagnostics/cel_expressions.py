"""CEL conditions: compiled once, evaluated against a plain dict of variables.

The Rust-backed ``common-expression-language`` package does the parsing and evaluation;
this module only wraps its errors and reports which variables an expression reads, which
is how the engine knows which rules a changed input concerns.

The common shapes (fields compared with literals, joined with ``&&``, ``||`` and ``!``;
sums of counters) are evaluated without the library by
:mod:`~posfleet.diagnostics.cel_fast_path`, which hands anything it cannot be sure of
back to the library, so the value or the error is always CEL's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cel

from posfleet.diagnostics.cel_fast_path import AskCel, Evaluator, compile_subset


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
    fast: Evaluator | None = field(default=None, repr=False, compare=False)
    """The expression compiled to Python when it is in the fast path's subset."""

    @classmethod
    def compile(cls, source: str) -> Expression:
        """Compile ``source``; raises :class:`CelSyntaxError` with the parser's reason."""
        try:
            program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            raise CelSyntaxError(_first_line(str(exc))) from exc
        variables = frozenset(program.variables())
        return cls(source, program, variables, _paths(source, variables), compile_subset(source))

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        """Pickled as its source and compiled again on loading (a compiled program does
        not pickle): this is how rules reach the rule worker process."""
        return (Expression.compile, (self.source,))

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The expression's value; raises ``ValueError`` when it cannot be computed."""
        if self.fast is not None:
            try:
                return self.fast(variables)
            except AskCel:
                pass
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


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else "invalid expression"
