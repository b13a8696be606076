"""The one rule every harness checks: a decoder rejects input only with its own error."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


Rejection = type[Exception] | tuple[type[Exception], ...]


def accepted(rejection: Rejection, call: Callable[[], T]) -> T | None:
    """``call()``'s result, or None when it rejects its input with a ``rejection`` error.

    Any other exception (a bare ``IndexError``, ``KeyError``, ``UnicodeError``,
    ``RecursionError`` ...) propagates: that is the bug the fuzzer reports. A typed
    rejection must also explain itself, so an empty message fails too.
    """
    try:
        return call()
    except rejection as exc:
        if not str(exc).strip():
            raise AssertionError(f"{type(exc).__name__} raised without a message") from exc
        return None
