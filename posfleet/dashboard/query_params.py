"""Query-string parameters of the API, validated the same way on every route.

:func:`query_model` reads a query string through the pydantic model that the route's
``@api_operation`` documents (the same kind of model as the JSON bodies), so the limits
the OpenAPI document states are the limits enforced. The single readers below are kept
for the pages. Each raises :class:`~posfleet.dashboard.errors.InvalidParameterError`
with a sentence naming the parameter, so a bad value is a 400 and never reaches the
database (where, say, an id above 2**63 - 1 overflows SQLite's INTEGER and was a 500).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Annotated, TypeVar

import pydantic
from aiohttp import web
from multidict import MultiMapping

from posfleet.contract import ContractError, validate_terminal_id
from posfleet.dashboard.errors import InvalidParameterError, UnknownParameterError

MAX_ROW_ID = 2**63 - 1
"""The largest id SQLite's INTEGER and PostgreSQL's BIGINT hold."""

MAX_TEXT_CHARS = 128


def shown(value: str) -> str:
    """``value`` quoted for an error message, cut at 40 characters."""
    return repr(value if len(value) <= 40 else value[:40] + "...")


def refuse_unknown(
    query: MultiMapping[str], accepted: Collection[str], aliases: Collection[str] = ()
) -> None:
    """Refuse every parameter not in ``accepted`` (or ``aliases``), naming all at once.

    The error lists ``accepted`` only: aliases are older names kept working, not advertised.
    """
    unknown = sorted({name for name in query if name not in accepted and name not in aliases})
    if unknown:
        raise UnknownParameterError(unknown, list(accepted))


def single(query: MultiMapping[str], name: str) -> str | None:
    """The one value of ``name``; an empty value counts as absent (as a form sends it)."""
    values = query.getall(name, [])
    if len(values) > 1:
        raise InvalidParameterError(name, f"give {name} once, not {len(values)} times")
    return values[0] if values and values[0] != "" else None


M = TypeVar("M", bound=pydantic.BaseModel)


def _flag_word(value: object) -> object:
    # Only the four words the documents name: pydantic alone would take yes, on, t, y...
    if isinstance(value, str) and value not in ("1", "true", "0", "false"):
        raise ValueError("must be 1, true, 0 or false")
    return value


Flag = Annotated[bool, pydantic.BeforeValidator(_flag_word)]
"""A query flag: ``1``/``true`` or ``0``/``false``."""


def query_model(query: MultiMapping[str], model: type[M]) -> M:
    """The query string as ``model``: a 400 naming the parameter for any value it refuses.

    Each parameter may come once; an empty value (a form's untouched field) counts as
    absent; a parameter the model does not name is refused (the model forbids extras),
    so a typo never widens a filter.
    """
    given: dict[str, str] = {}
    for name in query:
        value = single(query, name)
        if value is not None:
            given[name] = value
    accepted = list(model.model_fields)
    unknown = sorted(name for name in given if name not in model.model_fields)
    if unknown:
        raise UnknownParameterError(unknown, accepted)
    try:
        return model.model_validate(given)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = str(error["loc"][0]) if error["loc"] else "query"
        raw = given.get(name)
        sent = f", not {shown(raw)}" if raw is not None else ""
        raise InvalidParameterError(name, f"{name}: {error['msg']}{sent}") from None


def _whole_number(raw: str) -> int | None:
    # str.isdigit() also accepts '²' and other digits int() refuses: ASCII digits only.
    if raw.isascii() and raw.isdigit() and len(raw) <= 20:
        return int(raw)
    return None


def int_param(query: MultiMapping[str], name: str, default: int, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``; ``default`` when absent."""
    raw = single(query, name)
    if raw is None:
        return default
    value = _whole_number(raw)
    if value is None or not low <= value <= high:
        raise InvalidParameterError(
            name, f"{name} must be a whole number from {low} to {high}, not {shown(raw)}"
        )
    return value


def id_param(query: MultiMapping[str], name: str, what: str = "an incident id") -> int | None:
    """A row id (1 to 2**63 - 1), or None when absent."""
    raw = single(query, name)
    if raw is None:
        return None
    value = _whole_number(raw)
    if value is None or not 1 <= value <= MAX_ROW_ID:
        raise InvalidParameterError(
            name, f"{name} must be {what}: a whole number from 1 to {MAX_ROW_ID}, not {shown(raw)}"
        )
    return value


def flag_param(query: MultiMapping[str], name: str) -> bool:
    """``1``/``true`` or ``0``/``false``; absent is false."""
    raw = single(query, name)
    if raw is None or raw in ("0", "false"):
        return False
    if raw in ("1", "true"):
        return True
    raise InvalidParameterError(name, f"{name} must be 1, true, 0 or false, not {shown(raw)}")


def text_param(query: MultiMapping[str], name: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    """A text of 1 to ``limit`` characters, or None when absent."""
    raw = single(query, name)
    if raw is not None and len(raw) > limit:
        raise InvalidParameterError(name, f"{name} must be at most {limit} characters long")
    return raw


def choice_param(query: MultiMapping[str], name: str, choices: Collection[str]) -> str | None:
    """One of ``choices``, or None when absent."""
    raw = single(query, name)
    if raw is not None and raw not in choices:
        raise InvalidParameterError(
            name, f"{name} must be one of {', '.join(choices)}, not {shown(raw)}"
        )
    return raw


def time_param(query: MultiMapping[str], name: str, default: datetime) -> datetime:
    """An ISO 8601 time (UTC when it names no zone); ``default`` when absent."""
    raw = single(query, name)
    if raw is None:
        return default
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(
            name, f"{name} must be an ISO 8601 time such as 2026-03-02T09:30:00Z, not {shown(raw)}"
        ) from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def checked_terminal_id(raw: str, name: str = "terminal_id") -> str:
    """``raw`` if it is a terminal id; a 400 naming ``name`` otherwise."""
    try:
        validate_terminal_id(raw)
    except ContractError as exc:
        raise InvalidParameterError(name, str(exc)) from None
    return raw


def path_terminal_id(request: web.Request) -> str:
    """The route's ``{terminal_id}``, checked (a 400 naming it otherwise)."""
    return checked_terminal_id(request.match_info["terminal_id"])
