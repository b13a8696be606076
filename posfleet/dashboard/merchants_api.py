"""``/api/v1/merchants``: merchants and the contacts support calls; ops keep them current."""

from __future__ import annotations

import re
from typing import Annotated

import pydantic
from aiohttp import web

from posfleet.dashboard.access import principal, requires
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.app_keys import ENGINE_KEY
from posfleet.dashboard.errors import InvalidParameterError, NotFoundError
from posfleet.dashboard.json_bodies import json_model, json_object_body, validated_body
from posfleet.dashboard.paging_cursor import Cursor, cursors
from posfleet.dashboard.query_params import query_model, refuse_unknown, shown
from posfleet.store.accounts import Role, record_audit
from posfleet.store.merchants import (
    MAX_PAGE,
    MerchantChange,
    MerchantRecord,
    get_merchant,
    list_merchants,
    update_merchant,
)

_MERCHANT_ID = re.compile(r"[^\x00-\x1f/]{1,64}")
"""Merchant ids come from terminals as they are (letters of any script); no slash or control."""
MERCHANTS_SCOPE = "merchants"
"""The list name the cursors of ``GET /api/v1/merchants`` are signed for."""


class MerchantListQuery(pydantic.BaseModel):
    """``GET /api/v1/merchants`` parameters."""

    q: Annotated[str, pydantic.Field(max_length=64)] | None = None
    """Only the merchants found by this (id, name, contact, phone, city)."""
    limit: Annotated[int, pydantic.Field(ge=1, le=MAX_PAGE)] = 100
    after: Cursor | None = None
    """The ``next`` of the previous page."""


class MerchantPage(pydantic.BaseModel):
    """A page of merchants by id; ``next`` is the ``after`` of the next page (null: the last)."""

    items: list[MerchantRecord]
    next: str | None


class MerchantUpdate(MerchantChange):
    """``PUT /api/v1/merchants/{merchant_id}``: the fields to set, and why."""

    reason: Annotated[str, pydantic.Field(max_length=500)] = ""


def _merchant_id(request: web.Request) -> str:
    merchant_id = request.match_info["merchant_id"]
    if _MERCHANT_ID.fullmatch(merchant_id) is None:
        raise InvalidParameterError(
            "merchant_id",
            f"merchant id {shown(merchant_id)} must be 1 to 64 characters, no '/'",
        )
    return merchant_id


@api_operation("List merchants", tag="merchants", response=MerchantPage, query=MerchantListQuery)
@requires(Role.VIEWER)
async def list_merchants_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/merchants?q=&limit=&after=``: merchants by id."""
    query = query_model(request.query, MerchantListQuery)
    signer = cursors(request.app)
    after = signer.position(MERCHANTS_SCOPE, query.after, "after") if query.after else None
    async with request.app[ENGINE_KEY].connect() as conn:
        rows = await list_merchants(conn, text=query.q, limit=query.limit + 1, after=after)
    items = rows[: query.limit]
    more = len(rows) > query.limit
    following = signer.cursor(MERCHANTS_SCOPE, items[-1].merchant_id) if more else None
    return json_model(MerchantPage(items=items, next=following))


@api_operation(
    "One merchant", tag="merchants", response=MerchantRecord, errors=(400, 401, 403, 404)
)
@requires(Role.VIEWER)
async def get_merchant_endpoint(request: web.Request) -> web.Response:
    """``GET /api/v1/merchants/{merchant_id}``: one merchant, or 404."""
    refuse_unknown(request.query, ())
    merchant_id = _merchant_id(request)
    async with request.app[ENGINE_KEY].connect() as conn:
        record = await get_merchant(conn, merchant_id)
    if record is None:
        raise NotFoundError(f"no merchant {merchant_id!r} is known")
    return json_model(record)


@api_operation(
    "Set a merchant's name, contact, phone or city (created if unknown)",
    tag="merchants",
    response=MerchantRecord,
    body=MerchantUpdate,
)
@requires(Role.OPS)
async def put_merchant_endpoint(request: web.Request) -> web.Response:
    """``PUT /api/v1/merchants/{merchant_id}``: audited with who, what and why."""
    refuse_unknown(request.query, ())
    merchant_id = _merchant_id(request)
    raw = await json_object_body(request, max_fields=8)
    update = validated_body(MerchantUpdate, raw)
    change = MerchantChange.model_validate(update.model_dump(exclude={"reason"}))
    actor = principal(request).actor
    async with request.app[ENGINE_KEY].begin() as conn:
        before, after = await update_merchant(conn, merchant_id, change, actor=actor)
        await record_audit(
            conn,
            actor,
            "merchant.update" if before else "merchant.create",
            merchant_id,
            {
                "set": change.model_dump(exclude_none=True),
                "before": None
                if before is None
                else before.model_dump(include={"name", "contact_name", "contact_phone", "city"}),
            },
            update.reason,
        )
    return json_model(after)


def add_routes(app: web.Application) -> None:
    """Register the merchant endpoints."""
    app.router.add_get("/api/v1/merchants", list_merchants_endpoint)
    app.router.add_get("/api/v1/merchants/{merchant_id}", get_merchant_endpoint)
    app.router.add_put("/api/v1/merchants/{merchant_id}", put_merchant_endpoint)
