"""The common shapes of CEL conditions, evaluated in Python without the library.

Rules are evaluated on every report whose inputs changed: four or five conditions per
health report. Handing the library the nested dicts a condition reads costs it tens of
microseconds (it converts every value into CEL values first), far more than the
comparison itself. Almost every condition in the built-in rules, and most a helpdesk
writes, is fields compared with literals and joined with ``&&``, ``||`` and ``!``: that
subset is compiled here once, to Python closures, and evaluated directly.

The rule is simple: **when in doubt, ask the library.** A closure raises
:class:`AskCel` whenever CEL's own answer could differ from plain Python's: a missing
field, operands of two types (CEL compares ``1 < 1.5`` across types, reports ``1 + 2.5``
as an error), an int result outside 64 bits, a division by zero, a non-bool where CEL
needs one. The caller then evaluates the expression with the library, so a value or an
error is always CEL's. ``&&`` and ``||`` only short-circuit where CEL's result is the
same whatever the other side holds (``false && x`` is false even when ``x`` is an error),
which is the case in CEL, whose logical operators absorb errors from either side.
``tests/unit/test_cel_fast_path.py`` checks both ways agree on generated inputs.

Supported: field paths (``printer.status``), a string index last (``codes["91"]``),
``has(a.b)``, int, double, string and bool literals, ``in`` a list of literals or a
map's keys, ``!``, unary ``-``, ``+ - * /``, the six comparisons, ``&&``, ``||``,
``?:`` and parentheses. Anything else (method calls, macros, map or list expressions,
``uint``, bytes, escapes in strings) is not compiled: :func:`compile_subset` returns
None and the library evaluates it every time.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from typing import Any

Evaluator = Callable[[Mapping[str, Any]], Any]
"""A compiled condition: the variables in, the value out, or :class:`AskCel`."""

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class AskCel(Exception):
    """This input needs the library's answer: the subset cannot be sure of CEL's."""


class _NotInSubset(Exception):
    """The source uses something the subset does not compile."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+)(?![\w.])
      | (?P<string>"[^"\\\n]*"|'[^'\\\n]*')
      | (?P<name>[A-Za-z_]\w*)
      | (?P<op>&&|\|\||==|!=|<=|>=|[<>!()\[\],.+\-*/?:])
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"true": True, "false": False}
_RESERVED = frozenset({"null", "in", "as", "break", "const", "continue", "else", "for"})


def compile_subset(source: str) -> Evaluator | None:
    """A Python evaluator for ``source``, or None if it is outside the subset."""
    try:
        tokens = _tokenize(source)
        parser = _Parser(tokens)
        evaluator = parser.expression()
        if parser.peek() is not None:
            raise _NotInSubset("trailing input")
    except _NotInSubset:
        return None
    return evaluator


def _tokenize(source: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    position = 0
    text = source.rstrip()
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None or match.end() == position:
            raise _NotInSubset(f"unexpected input at {position}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


class _Parser:
    """Recursive descent over CEL's precedence: ``||`` < ``&&`` < relations < ``+ -`` <
    ``* /`` < unary < member access."""

    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self._tokens = tokens
        self._at = 0

    def peek(self) -> tuple[str, str] | None:
        return self._tokens[self._at] if self._at < len(self._tokens) else None

    def _take(self, text: str | None = None) -> tuple[str, str]:
        token = self.peek()
        if token is None or (text is not None and token[1] != text):
            raise _NotInSubset(f"expected {text!r}")
        self._at += 1
        return token

    def _next_is(self, *texts: str) -> bool:
        token = self.peek()
        return token is not None and token[0] in ("op", "name") and token[1] in texts

    def expression(self) -> Evaluator:
        condition = self._or()
        if not self._next_is("?"):
            return condition
        self._take()
        then = self._or()
        self._take(":")
        return _choose(condition, then, self.expression())

    def _or(self) -> Evaluator:
        left = self._and()
        while self._next_is("||"):
            self._take()
            left = _or(left, self._and())
        return left

    def _and(self) -> Evaluator:
        left = self._relation()
        while self._next_is("&&"):
            self._take()
            left = _and(left, self._relation())
        return left

    def _relation(self) -> Evaluator:
        left = self._sum()
        if self._next_is("in"):
            self._take()
            if self._next_is("["):
                return _member_of(left, self._literal_list())
            return _key_of(left, self._sum())
        token = self.peek()
        if token is not None and token[1] in _COMPARISONS:
            self._take()
            left = _compare(_COMPARISONS[token[1]], left, self._sum())
            if self._next_is(*_COMPARISONS, "in"):
                raise _NotInSubset("chained comparison")
        return left

    def _sum(self) -> Evaluator:
        left = self._product()
        while self._next_is("+", "-"):
            op = self._take()[1]
            left = _arithmetic(_ADD if op == "+" else _SUB, left, self._product())
        return left

    def _product(self) -> Evaluator:
        left = self._unary()
        while self._next_is("*", "/"):
            op = self._take()[1]
            left = _arithmetic(_MUL if op == "*" else _DIV, left, self._unary())
        return left

    def _unary(self) -> Evaluator:
        if self._next_is("!"):
            self._take()
            return _not(self._unary())
        if self._next_is("-"):
            self._take()
            return _negate(self._unary())
        return self._member()

    def _member(self) -> Evaluator:
        token = self._take()
        kind, text = token
        if text == "(":
            inner = self.expression()
            self._take(")")
            if self._next_is("."):
                raise _NotInSubset("member of a parenthesised expression")
            return inner
        if kind == "number":
            return _constant(_number(text))
        if kind == "string":
            return _constant(text[1:-1])
        if kind != "name" or text in _RESERVED:
            raise _NotInSubset(f"unexpected {text!r}")
        if text in _KEYWORDS:
            return _constant(_KEYWORDS[text])
        if text == "has" and self._next_is("("):
            self._take()
            path = self._path(self._take()[1])
            self._take(")")
            if len(path) < 2:
                raise _NotInSubset("has() of a bare name")
            return _has(path)
        found = _field(self._path(text))
        if self._next_is("["):
            self._take()
            kind, key = self._take()
            self._take("]")
            if kind != "string" or self._next_is(".", "[", "("):
                raise _NotInSubset("only a string index, last")
            return _index(found, key[1:-1])
        return found

    def _path(self, first: str) -> tuple[str, ...]:
        if not re.fullmatch(r"[A-Za-z_]\w*", first) or first in _RESERVED or first in _KEYWORDS:
            raise _NotInSubset("not a field path")
        parts = [first]
        while self._next_is("."):
            self._take()
            kind, text = self._take()
            if kind != "name" or text in _RESERVED:
                raise _NotInSubset("not a field name")
            parts.append(text)
        if self._next_is("("):
            raise _NotInSubset("a call")
        return tuple(parts)

    def _literal_list(self) -> tuple[Any, ...]:
        self._take("[")
        values: list[Any] = []
        while not self._next_is("]"):
            kind, text = self._take()
            if kind == "string":
                values.append(text[1:-1])
            elif kind == "number":
                values.append(_number(text))
            else:
                raise _NotInSubset("only literals in a list")
            if not self._next_is("]"):
                self._take(",")
        self._take("]")
        return tuple(values)


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE"):
        return float(text)
    value = int(text)
    if value > _INT64_MAX:
        raise _NotInSubset("int literal past 64 bits")
    return value


# -- the closures ------------------------------------------------------------------------


def _constant(value: Any) -> Evaluator:
    return lambda _variables: value


def _field(path: tuple[str, ...]) -> Evaluator:
    head, rest = path[0], path[1:]
    if len(rest) == 1:
        # The usual depth (``printer.status``): one function, no loop.
        part = rest[0]

        def read_two(variables: Mapping[str, Any]) -> Any:
            parent = variables.get(head)
            if type(parent) is not dict and not isinstance(parent, Mapping):
                raise AskCel
            value = parent.get(part)
            if value is None:
                raise AskCel
            return value

        return read_two

    def read(variables: Mapping[str, Any]) -> Any:
        value = variables.get(head)
        for part in rest:
            if type(value) is not dict and not isinstance(value, Mapping):
                raise AskCel
            value = value.get(part)
        if value is None:  # missing, or CEL's null: the library knows what either means
            raise AskCel
        return value

    return read


def _has(path: tuple[str, ...]) -> Evaluator:
    parent, last = _field(path[:-1]), path[-1]

    def has(variables: Mapping[str, Any]) -> bool:
        container = parent(variables)
        if type(container) is not dict and not isinstance(container, Mapping):
            raise AskCel
        return last in container

    return has


def _bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise AskCel


def _or(left: Evaluator, right: Evaluator) -> Evaluator:
    def either(variables: Mapping[str, Any]) -> bool:
        try:
            if _bool(left(variables)):
                return True
        except AskCel:
            # CEL absorbs an error on one side when the other side is true.
            if _bool(right(variables)):
                return True
            raise
        return _bool(right(variables))

    return either


def _and(left: Evaluator, right: Evaluator) -> Evaluator:
    def both(variables: Mapping[str, Any]) -> bool:
        try:
            if not _bool(left(variables)):
                return False
        except AskCel:
            if not _bool(right(variables)):
                return False
            raise
        return _bool(right(variables))

    return both


def _not(inner: Evaluator) -> Evaluator:
    return lambda variables: not _bool(inner(variables))


def _negate(inner: Evaluator) -> Evaluator:
    def negate(variables: Mapping[str, Any]) -> Any:
        value = inner(variables)
        if type(value) is float:
            return -value
        if type(value) is int and value != _INT64_MIN:
            return -value
        raise AskCel

    return negate


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_ORDERED = (int, float, str)


def _compare(op: Callable[[Any, Any], bool], left: Evaluator, right: Evaluator) -> Evaluator:
    equality = op in (operator.eq, operator.ne)

    def compare(variables: Mapping[str, Any]) -> bool:
        a, b = left(variables), right(variables)
        kind = type(a)
        # One type on both sides, and a plain one: bool only for == and !=.
        if kind is not type(b) or not (kind in _ORDERED or (equality and kind is bool)):
            raise AskCel
        return op(a, b)

    return compare


def _member_of(value: Evaluator, choices: tuple[Any, ...]) -> Evaluator:
    kinds = {type(choice) for choice in choices}

    def member(variables: Mapping[str, Any]) -> bool:
        found = value(variables)
        if len(kinds) != 1 or type(found) not in kinds:
            raise AskCel
        return found in choices

    return member


def _choose(condition: Evaluator, then: Evaluator, otherwise: Evaluator) -> Evaluator:
    return lambda variables: (
        then(variables) if _bool(condition(variables)) else otherwise(variables)
    )


def _key_of(key: Evaluator, container: Evaluator) -> Evaluator:
    def key_of(variables: Mapping[str, Any]) -> bool:
        found, mapping = key(variables), container(variables)
        # A string key in a map: CEL's "in" is then a key lookup, as Python's.
        if type(found) is not str or type(mapping) is not dict:
            raise AskCel
        return found in mapping

    return key_of


def _index(container: Evaluator, key: str) -> Evaluator:
    def index(variables: Mapping[str, Any]) -> Any:
        mapping = container(variables)
        if type(mapping) is not dict:
            raise AskCel
        value = mapping.get(key)
        if value is None:
            raise AskCel
        return value

    return index


def _add(a: Any, b: Any) -> Any:
    return a + b


def _sub(a: Any, b: Any) -> Any:
    return a - b


def _mul(a: Any, b: Any) -> Any:
    return a * b


def _div(a: Any, b: Any) -> Any:
    if type(a) is not float or b == 0:
        raise AskCel  # int division truncates in CEL, and x / 0.0 is CEL's infinity
    return a / b


_ADD, _SUB, _MUL, _DIV = _add, _sub, _mul, _div


def _arithmetic(op: Callable[[Any, Any], Any], left: Evaluator, right: Evaluator) -> Evaluator:
    def arithmetic(variables: Mapping[str, Any]) -> Any:
        a, b = left(variables), right(variables)
        kind = type(a)
        if kind is not type(b) or kind not in (int, float):
            raise AskCel
        result = op(a, b)
        if kind is int and not _INT64_MIN <= result <= _INT64_MAX:
            raise AskCel
        return result

    return arithmetic
