"""CEL expressions: sums of counters on the fast path give exactly the library's value or error."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posfleet.diagnostics.cel_expressions import Expression

SUMS = [
    "card_reader.chip.reads + card_reader.magstripe.reads + card_reader.contactless.reads",
    "card_reader.chip.errors + card_reader.magstripe.errors",
    "network.tls_failures",
    "boots",
]


def _library(expression: Expression, variables: dict[str, Any]) -> Any:
    """What the library alone says (the fast path switched off)."""
    context = {n: variables[n] for n in expression.variables if n in variables}
    try:
        return expression.program.execute(context)
    except (TypeError, ValueError, KeyError, RuntimeError, ArithmeticError):
        return ValueError


def _ours(expression: Expression, variables: dict[str, Any]) -> Any:
    try:
        return expression.evaluate(variables)
    except ValueError:
        return ValueError


_VALUES = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(2**62, 2**64),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=3),
)
_READER = st.dictionaries(
    st.sampled_from(["chip", "magstripe", "contactless"]),
    st.dictionaries(st.sampled_from(["reads", "errors"]), _VALUES),
)
_VARIABLES = st.fixed_dictionaries(
    {},
    optional={
        "card_reader": _READER,
        "network": st.dictionaries(st.just("tls_failures"), _VALUES),
        "boots": _VALUES,
    },
)


@settings(max_examples=400, deadline=None)
@given(source=st.sampled_from(SUMS), variables=_VARIABLES)
def test_the_shortcut_agrees_with_the_library_on_any_input(
    source: str, variables: dict[str, Any]
) -> None:
    expression = Expression.compile(source)
    assert expression.fast is not None
    assert _ours(expression, variables) == _library(expression, variables)


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        ({"card_reader": {"chip": {"errors": 2}, "magstripe": {"errors": 3}}}, 5),
        ({"card_reader": {"chip": {"errors": 2.5}, "magstripe": {"errors": 0.5}}}, 3.0),
    ],
)
def test_a_sum_of_counters_is_their_sum(variables: dict[str, Any], expected: float) -> None:
    expression = Expression.compile(SUMS[1])
    assert expression.evaluate(variables) == expected


def test_an_int_plus_a_double_is_the_library_s_error() -> None:
    variables = {"card_reader": {"chip": {"errors": 2}, "magstripe": {"errors": 0.5}}}
    with pytest.raises(ValueError, match="overload"):
        Expression.compile(SUMS[1]).evaluate(variables)


def test_an_int_sum_past_64_bits_cannot_be_evaluated_it_does_not_raise_overflow() -> None:
    # Found by the agreement test: the library raised OverflowError, which went past the
    # engine's handling of conditions that cannot be evaluated.
    for source in ["a + b", "a + b > 0"]:
        with pytest.raises(ValueError, match="overflow"):
            Expression.compile(source).evaluate({"a": 2**62, "b": 2**62})
