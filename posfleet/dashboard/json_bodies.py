"""JSON in and out of the API: one reader for request bodies, one writer for answers."""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pydantic
from aiohttp import web

from posfleet.dashboard.errors import InvalidParameterError, RequestRejectedError

_ANY = pydantic.TypeAdapter(Any)


def json_model(model: pydantic.BaseModel, status: int = 200) -> web.Response:
    """A JSON response serialised by the model itself (the model is the schema)."""
    return web.Response(
        status=status, text=model.model_dump_json(), content_type="application/json"
    )


def json_response(payload: Any, status: int = 200) -> web.Response:
    """``payload`` as JSON; datetimes, enums and pydantic models as their JSON form."""
    return web.Response(
        status=status,
        text=json.dumps(_ANY.dump_python(payload, mode="json")),
        content_type="application/json",
    )


async def json_object_body(
    request: web.Request, *, max_fields: int | None = None
) -> dict[str, Any]:
    """The request's JSON object body (``{}`` when there is none); a 400 for anything else.

    ``max_fields`` bounds how many top-level fields a body may carry.
    """
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise RequestRejectedError("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise RequestRejectedError("the request body must be a JSON object")
    if max_fields is not None and len(body) > max_fields:
        raise RequestRejectedError(
            f"the request body must be a JSON object of at most {max_fields} fields"
        )
    return body


M = TypeVar("M", bound=pydantic.BaseModel)


def validated_body(model: type[M], raw: object) -> M:
    """``raw`` (a parsed JSON body) as ``model``; a 400 naming the first bad field."""
    try:
        return model.model_validate(raw)
    except pydantic.ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        name = ".".join(str(p) for p in error["loc"]) or "body"
        raise InvalidParameterError(name, f"{name}: {error['msg']}") from None
