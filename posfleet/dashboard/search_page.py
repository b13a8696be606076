"""``/search?q=``: the header's search box; ``/api/v1/search``: the same as JSON.

One query finds terminals (id, serial, merchant name or id, site, contact phone), the
merchants themselves and the merchant cases that mention it; each list is short and
links on (a terminal to its page, a merchant to the fleet list narrowed to it).
"""

from __future__ import annotations

from typing import Annotated

import pydantic
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection

from posfleet.contract import utcnow
from posfleet.dashboard.access import requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError
from posfleet.dashboard.fleet_summary import MATCH_COUNT_LIMIT, count_terminals
from posfleet.dashboard.fleet_view import terminal_rows
from posfleet.dashboard.json_bodies import json_model
from posfleet.dashboard.query_params import int_param, refuse_unknown, single
from posfleet.dashboard.templating import render_page
from posfleet.store.accounts import Role
from posfleet.store.cases import CaseRecord, search_cases
from posfleet.store.merchants import MerchantRecord, list_merchants, terminal_counts
from posfleet.store.terminal_filters import TerminalFilter
from posfleet.store.terminals import TerminalRecord, list_terminals

SEARCH_PATH = "/search"
MAX_QUERY_CHARS = 64
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class SearchQuery(pydantic.BaseModel):
    """``GET /api/v1/search`` parameters."""

    q: Annotated[str, pydantic.Field(min_length=1, max_length=MAX_QUERY_CHARS)]
    """A part of a terminal id, serial, merchant name or id, site, or phone number."""
    limit: Annotated[int, pydantic.Field(ge=1, le=MAX_LIMIT)] = DEFAULT_LIMIT
    """At most this many of each kind."""


class MerchantMatch(pydantic.BaseModel):
    """A merchant found, with how many terminals it has."""

    merchant: MerchantRecord
    terminals: int


class SearchResult(pydantic.BaseModel):
    """What one search found: terminals, merchants and cases, each at most ``limit``."""

    query: str
    terminals: list[TerminalRecord]
    terminal_matches: int
    """How many terminals match in all (counted up to 1000; see ``more_terminals``)."""
    more_terminals: bool
    """True when more terminals match than were counted."""
    merchants: list[MerchantMatch]
    cases: list[CaseRecord]


def _search_text(request: web.Request, *, required: bool) -> str | None:
    raw = single(request.query, "q")
    text = raw.strip() if raw is not None else ""
    if not text:
        if required:
            raise InvalidParameterError("q", "q is required: a part of what to find")
        return None
    if len(text) > MAX_QUERY_CHARS:
        raise InvalidParameterError("q", f"q must be at most {MAX_QUERY_CHARS} characters")
    return text


async def find(conn: AsyncConnection, text: str, limit: int) -> SearchResult:
    """Everything ``text`` finds, at most ``limit`` of each kind."""
    where = TerminalFilter(text=text)
    found = await list_terminals(conn, where=where, limit=limit)
    counts = await count_terminals(conn, where)
    merchants = await list_merchants(conn, text=text, limit=limit)
    per_merchant = await terminal_counts(conn, [m.merchant_id for m in merchants])
    return SearchResult(
        query=text,
        terminals=found,
        terminal_matches=counts.total,
        more_terminals=counts.capped,
        merchants=[
            MerchantMatch(merchant=m, terminals=per_merchant.get(m.merchant_id, 0))
            for m in merchants
        ],
        cases=await search_cases(conn, text, limit),
    )


@requires(Role.VIEWER)
async def search_page(request: web.Request) -> web.Response:
    """``GET /search?q=``: terminals, merchants and cases that ``q`` finds."""
    refuse_unknown(request.query, ("q",))
    text = _search_text(request, required=False)
    result = None
    rows = []
    if text is not None:
        async with request.app[ENGINE_KEY].connect() as conn:
            result = await find(conn, text, DEFAULT_LIMIT)
        rows = terminal_rows(result.terminals, utcnow())
    return render_page(
        request,
        "search.html",
        {
            "search_query": text or "",
            "result": result,
            "rows": rows,
            "count_limit": MATCH_COUNT_LIMIT,
        },
    )


@api_operation(
    "Find terminals, merchants and cases by a part of an id, name, site or phone",
    tag="search",
    response=SearchResult,
    query=SearchQuery,
)
@requires(Role.VIEWER)
async def search_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/search?q=&limit=``: what the search page shows, as JSON."""
    refuse_unknown(request.query, ("q", "limit"))
    text = _search_text(request, required=True)
    assert text is not None
    limit = int_param(request.query, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    async with request.app[ENGINE_KEY].connect() as conn:
        result = await find(conn, text, limit)
    return json_model(result)


def add_routes(app: web.Application) -> None:
    """Register the search page and its API."""
    app.router.add_get(SEARCH_PATH, search_page)
    app.router.add_get("/api/v1/search", search_endpoint)
