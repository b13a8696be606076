"""One page of the fleet list: its query parameters, validated, and the page itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import pydantic
from multidict import MultiMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import ContractError, validate_terminal_id
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.store.terminal_filters import TerminalFilter, TerminalSort
from posfleet.store.terminals import TerminalRecord, list_terminals

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_PARAMETERS = ("after", "limit", "online", "model", "firmware", "merchant", "site", "q", "sort")
_MAX_FILTER_CHARS = 64


@dataclass(frozen=True, slots=True)
class TerminalQuery:
    """Which terminals to list: filters, order, page size, and the cursor to start after."""

    online: bool | None = None
    limit: int = DEFAULT_LIMIT
    after: str | None = None
    where: TerminalFilter = field(default_factory=TerminalFilter)
    sort: TerminalSort = TerminalSort.TERMINAL_ID


class TerminalPage(pydantic.BaseModel):
    """A page of terminals; ``next`` is the ``after`` cursor of the next page, or null."""

    items: list[TerminalRecord]
    next: str | None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise InvalidParameterError(name, f"give {name} once, not {len(values)} times")
    return values[0] if values else None


def parse_terminal_query(query: MultiMapping[str]) -> TerminalQuery:
    """Validate ``?online=true|false&limit=N&after=<terminal id>`` and the filters.

    ``model``, ``firmware``, ``merchant`` and ``site`` match exactly, ``q`` is a
    case-insensitive substring of id, serial, model, merchant or site, and ``sort`` is
    one of ``terminal_id``, ``last_seen``, ``-last_seen``, ``-seq_gaps``.

    Unknown parameters are refused rather than ignored: a typo such as ``?onlin=false``
    would otherwise silently list the whole fleet.
    """
    for name in query:
        if name not in _PARAMETERS:
            raise InvalidParameterError(
                name,
                f"unknown query parameter {_shown(name)}; expected {', '.join(_PARAMETERS)}",
            )
    online: bool | None = None
    if (raw := _single(query, "online")) is not None:
        if raw not in ("true", "false"):
            raise InvalidParameterError(
                "online", f"online must be true or false, not {_shown(raw)}"
            )
        online = raw == "true"
    limit = DEFAULT_LIMIT
    if (raw := _single(query, "limit")) is not None:
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
            raise InvalidParameterError(
                "limit", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {_shown(raw)}"
            )
        limit = int(raw)
    after = _single(query, "after")
    if after is not None:
        try:
            validate_terminal_id(after)
        except ContractError:
            raise InvalidParameterError(
                "after",
                "after must be a terminal id (1 to 64 letters, digits, '_' or '-'), "
                f"not {_shown(after)}",
            ) from None
    texts: dict[str, str | None] = {}
    for name in ("model", "firmware", "merchant", "site", "q"):
        raw = _single(query, name)
        if raw is not None and not 1 <= len(raw) <= _MAX_FILTER_CHARS:
            raise InvalidParameterError(
                name, f"{name} must be 1 to {_MAX_FILTER_CHARS} characters long"
            )
        texts[name] = raw
    where = TerminalFilter(
        model=texts["model"],
        firmware_version=texts["firmware"],
        merchant_id=texts["merchant"],
        site_id=texts["site"],
        text=texts["q"],
    )
    sort = TerminalSort.TERMINAL_ID
    if (raw := _single(query, "sort")) is not None:
        try:
            sort = TerminalSort(raw)
        except ValueError:
            choices = ", ".join(s.value for s in TerminalSort)
            raise InvalidParameterError(
                "sort", f"sort must be one of {choices}, not {_shown(raw)}"
            ) from None
    return TerminalQuery(online, limit, after, where, sort)


async def fetch_terminal_page(conn: AsyncConnection, query: TerminalQuery) -> TerminalPage:
    """The page of terminals that ``query`` asks for."""
    # One row more than asked tells whether a next page exists without counting.
    rows = await list_terminals(
        conn,
        online=query.online,
        limit=query.limit + 1,
        after=query.after,
        where=query.where,
        sort=query.sort,
    )
    items = rows[: query.limit]
    has_more = len(rows) > query.limit
    return TerminalPage(items=items, next=items[-1].terminal_id if has_more else None)
