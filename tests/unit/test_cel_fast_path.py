"""The CEL fast path gives exactly the library's value or error, on any input.

Expressions are generated from the subset's grammar (and include every built-in rule's
conditions and counters); variables are generated with the wrong types, missing fields,
64-bit edges and zeros mixed in. For each pair, what :class:`Expression` answers (fast
path first) must equal what the library alone answers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from posfleet.diagnostics.cel_expressions import CelSyntaxError, Expression
from posfleet.diagnostics.cel_fast_path import compile_subset
from posfleet.diagnostics.rule_files import load_builtin_rules

_ERROR = "error"


def _library(expression: Expression, variables: dict[str, Any]) -> Any:
    context = {n: variables[n] for n in expression.variables if n in variables}
    try:
        return _normal(expression.program.execute(context))
    except (TypeError, ValueError, KeyError, RuntimeError, ArithmeticError):
        return _ERROR


def _ours(expression: Expression, variables: dict[str, Any]) -> Any:
    try:
        return _normal(expression.evaluate(variables))
    except ValueError:
        return _ERROR


def _normal(value: Any) -> Any:
    """NaN is not equal to itself; compare it as a marker, and keep the value's type."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return (type(value).__name__, value)


_NUMBERS = st.one_of(
    st.integers(-5, 5),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([2**62, 2**63 - 1, -(2**63)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1.5, 15.0, 60.0]),
)
_LEAVES = st.one_of(
    _NUMBERS, st.booleans(), st.sampled_from(["ok", "jam", "91", ""]), st.text(max_size=2)
)
_FIELDS = ["a", "b", "c"]
_VARIABLES = st.fixed_dictionaries(
    {},
    optional={
        name: st.one_of(
            _LEAVES,
            st.dictionaries(
                st.sampled_from([*_FIELDS, "91"]),
                st.one_of(_LEAVES, st.dictionaries(st.sampled_from(_FIELDS), _LEAVES)),
                max_size=4,
            ),
        )
        for name in ["x", "y", "z"]
    },
)

# Inputs of the types rules see in reports (ints, doubles, enum strings, flags), where
# the fast path answers itself far more often than on the mixed bag above.
_REPORT_LIKE = st.fixed_dictionaries(
    {
        "x": st.fixed_dictionaries(
            {"a": st.integers(-5, 5), "c": st.floats(-5, 5)},
            optional={"91": st.integers(0, 3), "b": st.integers(-(2**63), 2**63 - 1)},
        ),
        "y": st.fixed_dictionaries({"b": st.sampled_from(["ok", "jam", "x"])}),
        "z": st.fixed_dictionaries({"a": st.fixed_dictionaries({"b": st.booleans()})}),
    }
)

_LITERALS = st.sampled_from(["0", "3", "-2", "1.5", "60.0", "0.0", '"ok"', "'jam'", "true"])
_PATHS = st.sampled_from(["x", "y", "x.a", "y.b", "z.a.b", "x.c", 'x["91"]', "z.a"])


def _expressions() -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.one_of(
            st.tuples(inner, st.sampled_from(["&&", "||"]), inner).map(" ".join),
            st.tuples(inner, st.sampled_from(["<", "<=", ">", ">=", "==", "!="]), inner).map(
                " ".join
            ),
            st.tuples(inner, st.sampled_from(["+", "-", "*", "/"]), inner).map(" ".join),
            inner.map(lambda e: f"!{e}"),
            inner.map(lambda e: f"-{e}"),
            inner.map(lambda e: f"({e})"),
            st.tuples(inner, inner, inner).map(lambda t: f"({t[0]} ? {t[1]} : {t[2]})"),
            inner.map(lambda e: f'{e} in ["ok", "jam"]'),
            inner.map(lambda e: f"{e} in [1, 2.5]"),
            st.sampled_from(["x", "y", "z.a"]).map(lambda e: f'"91" in {e}'),
            st.sampled_from(["x.a", "y.b", "z.a.b"]).map(lambda e: f"has({e})"),
        )

    return st.recursive(st.one_of(_LITERALS, _PATHS), extend, max_leaves=6)


_BUILTIN = sorted(
    {
        expression.source
        for rule in load_builtin_rules()
        for expression in [rule.when, rule.clear_when, *(e for _, e in rule.increase)]
        if expression is not None
    }
)


@pytest.mark.filterwarnings("ignore:Generating overly large repr")
@settings(max_examples=1500, deadline=None)
@given(source=_expressions(), variables=_VARIABLES | _REPORT_LIKE)
def test_generated_expressions_agree_with_the_library(
    source: str, variables: dict[str, Any]
) -> None:
    try:
        expression = Expression.compile(source)
    except CelSyntaxError:
        assume(False)  # not CEL (``-!x``): nothing to agree on
        return
    assert _ours(expression, variables) == _library(expression, variables), source


def test_every_built_in_condition_and_counter_takes_the_fast_path() -> None:
    # Otherwise the engine pays the library's conversion on every report again.
    slow = [source for source in _BUILTIN if compile_subset(source) is None]
    assert slow == []


_METRIC_VALUES = st.one_of(st.integers(-100, 3_000_000), st.floats(-100, 100), st.booleans())


@settings(max_examples=500, deadline=None)
@given(
    source=st.sampled_from(_BUILTIN),
    values=st.dictionaries(st.text("abcdefghijklmnopqrstuvwxyz_", max_size=20), _METRIC_VALUES),
    data=st.data(),
)
def test_built_in_expressions_agree_with_the_library_on_reports(
    source: str, values: dict[str, Any], data: st.DataObject
) -> None:
    expression = Expression.compile(source)
    # Each variable the expression reads: absent, a scalar, or an object of its fields.
    variables: dict[str, Any] = {}
    for path in sorted(expression.paths):
        name, _, sub = path.partition(".")
        choice = data.draw(st.sampled_from(["object", "scalar", "absent"]))
        if choice == "absent":
            continue
        if choice == "scalar" or not sub:
            variables[name] = data.draw(_METRIC_VALUES | st.sampled_from(["ok", "jam"]))
            continue
        holder = variables.setdefault(name, {})
        if isinstance(holder, dict):
            holder[sub] = data.draw(
                _METRIC_VALUES
                | st.sampled_from(["ok", "jam", "overheat", "paper_low"])
                | st.dictionaries(st.sampled_from(["91", "96", "55", "reads"]), _METRIC_VALUES)
            )
    assert _ours(expression, variables) == _library(expression, variables), (source, variables)


@pytest.mark.parametrize(
    "source",
    [
        "a.b.startsWith('x')",
        "size(a) > 1",
        "a.exists(x, x > 1)",
        "1u < a",
        "{'k': 1}.k == 1",
        "[1, 2][0] == 1",
        '"a\\\\nb" == a',
        "a < b < c",
        "r'raw' == a",
        "b'bytes' == a",
        "null == a",
        "a == b in [1]",
    ],
)
def test_what_the_subset_does_not_cover_is_left_to_the_library(source: str) -> None:
    assert compile_subset(source) is None


def test_a_sum_past_64_bits_is_the_library_s_overflow_error() -> None:
    with pytest.raises(ValueError, match="overflow"):
        Expression.compile("a + b > 0").evaluate({"a": 2**62, "b": 2**62})
