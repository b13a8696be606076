"""One page of the fleet list: its query parameters, validated, and the page itself."""

from __future__ import annotations

from dataclasses import dataclass, field

import pydantic
from multidict import MultiMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.paging_cursor import MAX_CURSOR_CHARS, PagingCursors
from posfleet.store.terminal_filters import TerminalFilter, TerminalSort
from posfleet.store.terminals import TerminalRecord, list_terminals

DEFAULT_LIMIT = 100
MAX_LIMIT = 500
_PARAMETERS = (
    "after", "limit", "online", "faulty", "model", "firmware", "merchant", "site", "q", "sort",
)  # fmt: skip
MAX_FILTER_CHARS = 64
TERMINALS_SCOPE = "terminals"
"""The list name the fleet list's cursors are signed for (the page's and the API's)."""


@dataclass(frozen=True, slots=True)
class TerminalQuery:
    """Which terminals to list: filters, order, page size, and the cursor to start after."""

    online: bool | None = None
    limit: int = DEFAULT_LIMIT
    after: str | None = None
    where: TerminalFilter = field(default_factory=TerminalFilter)
    sort: TerminalSort = TerminalSort.TERMINAL_ID

    @property
    def narrowed(self) -> bool:
        """True when a filter leaves out part of the fleet (paging and order do not)."""
        w = self.where
        fields = (w.model, w.firmware_version, w.merchant_id, w.site_id, w.text, w.faulty)
        return self.online is not None or any(value is not None for value in fields)


class TerminalPage(pydantic.BaseModel):
    """A page of terminals; ``next`` is the ``after`` of the next page (null: the last)."""

    items: list[TerminalRecord]
    next: str | None


def _shown(value: str) -> str:
    return repr(value if len(value) <= 40 else value[:40] + "...")


def _single(query: MultiMapping[str], name: str) -> str | None:
    values = query.getall(name, [])
    if len(values) > 1:
        raise InvalidParameterError(name, f"give {name} once, not {len(values)} times")
    return values[0] if values else None


def _flag(query: MultiMapping[str], name: str) -> bool | None:
    if (raw := _single(query, name)) is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise InvalidParameterError(name, f"{name} must be true or false, not {_shown(raw)}")
    return raw == "true"


def parse_terminal_query(query: MultiMapping[str], cursors: PagingCursors) -> TerminalQuery:
    """Validate ``?online=true|false&limit=N&after=<cursor>`` and the filters.

    ``after`` is the ``next`` of the previous page, checked with ``cursors``.

    ``faulty=true`` keeps the terminals with an unresolved incident (``false``: without).

    ``model``, ``firmware``, ``merchant`` and ``site`` match exactly (empty: any), ``q`` is a
    case-insensitive substring of id, serial, model, merchant or site (an empty or blank
    ``q``, as a search box sends, means no search), and ``sort`` is
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
    online = _flag(query, "online")
    faulty = _flag(query, "faulty")
    limit = DEFAULT_LIMIT
    if (raw := _single(query, "limit")) is not None:
        if not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= MAX_LIMIT):
            raise InvalidParameterError(
                "limit", f"limit must be a whole number from 1 to {MAX_LIMIT}, not {_shown(raw)}"
            )
        limit = int(raw)
    after = _single(query, "after") or None
    if after is not None:
        if len(after) > MAX_CURSOR_CHARS:
            raise InvalidParameterError("after", "after is longer than any cursor")
        after = cursors.position(TERMINALS_SCOPE, after, "after")
    texts: dict[str, str | None] = {}
    for name in ("model", "firmware", "merchant", "site", "q"):
        raw = _single(query, name)
        if raw is not None:
            # A form's field left empty asks for no filter at all (the fleet page's filter
            # form sends every field); a search box of only spaces, for no search.
            raw = (raw.strip() if name == "q" else raw) or None
        if raw is not None and not 1 <= len(raw) <= MAX_FILTER_CHARS:
            raise InvalidParameterError(
                name, f"{name} must be 1 to {MAX_FILTER_CHARS} characters long"
            )
        texts[name] = raw
    where = TerminalFilter(
        model=texts["model"],
        firmware_version=texts["firmware"],
        merchant_id=texts["merchant"],
        site_id=texts["site"],
        text=texts["q"],
        faulty=faulty,
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


async def fetch_terminal_page(
    conn: AsyncConnection, query: TerminalQuery, cursors: PagingCursors
) -> TerminalPage:
    """The page of terminals that ``query`` asks for; its ``next`` signed by ``cursors``."""
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
    following = cursors.cursor(TERMINALS_SCOPE, items[-1].terminal_id) if has_more else None
    return TerminalPage(items=items, next=following)
