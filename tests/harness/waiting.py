"""Wait on a condition with a deadline: the only way tests synchronise with servers."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 5.0,
    interval: float = 0.02,
    *,
    description: str | None = None,
) -> T:
    """Poll ``predicate`` until it returns a truthy value, and return that value.

    Raises ``AssertionError`` naming ``description`` (or the predicate) and the last
    value seen when ``timeout`` seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_message(predicate, description, timeout, value))
        time.sleep(interval)


@overload
async def async_wait_for(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    *,
    description: str | None = ...,
) -> T: ...


@overload
async def async_wait_for(
    predicate: Callable[[], T],
    timeout: float = ...,  # noqa: ASYNC109
    interval: float = ...,
    *,
    description: str | None = ...,
) -> T: ...


async def async_wait_for(
    predicate: Callable[[], object],
    # Plain seconds, like wait_for, so sync and async tests read alike.
    timeout: float = 5.0,  # noqa: ASYNC109
    interval: float = 0.02,
    *,
    description: str | None = None,
) -> Any:
    """Like :func:`wait_for`, without blocking the event loop; ``predicate`` may be async."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        value = await result if inspect.isawaitable(result) else result
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(_timeout_message(predicate, description, timeout, value))
        await asyncio.sleep(interval)


def _timeout_message(
    predicate: Callable[..., object], description: str | None, timeout: float, last: object
) -> str:
    what = description or getattr(predicate, "__qualname__", repr(predicate))
    return f"timed out after {timeout:g} s waiting for {what} (last value: {last!r})"
