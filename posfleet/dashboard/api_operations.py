"""What each ``/api/v1`` handler takes and returns, declared beside it for the OpenAPI
document.

A handler decorated with :func:`api_operation` names its pydantic models (query, body,
response); the OpenAPI document is generated from the route table and these models, so
it cannot drift from what the handlers parse and return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from pydantic import BaseModel

from posfleet.dashboard.access import Handler

H = TypeVar("H", bound=Handler)

_ATTRIBUTE = "__posfleet_api_operation__"


@dataclass(frozen=True, slots=True)
class ApiOperation:
    """One API operation as the OpenAPI document describes it."""

    summary: str
    tag: str
    response: type[BaseModel] | None = None
    """The body of the success answer; None for an answer without a JSON body."""
    status: int = 200
    """The success status (``201`` for a create, ``204`` for no content)."""
    query: type[BaseModel] | None = None
    """The query parameters, one field each."""
    body: type[BaseModel] | None = None
    """The JSON request body."""
    errors: tuple[int, ...] = (400, 401, 403)
    """The problem+json statuses the operation may answer."""
    content_types: Mapping[str, str] = field(default_factory=dict)
    """Non-JSON success bodies, e.g. ``{"text/csv": "the report as CSV"}``."""
    path: type[BaseModel] | None = None
    """The path parameters, one field each (their patterns and limits); without it each
    ``{name}`` of the route is documented as a plain text."""
    body_media_type: str = "application/json"
    """How the body is sent: ``multipart/form-data`` for an upload (``body`` then names
    the parts, a binary part as ``bytes``)."""
    also: tuple[int, ...] = ()
    """Further success statuses with the same body (``200`` beside a create's ``201``
    when the object already existed)."""


def api_operation(
    summary: str,
    *,
    tag: str,
    response: type[BaseModel] | None = None,
    status: int = 200,
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    errors: tuple[int, ...] = (400, 401, 403),
    content_types: Mapping[str, str] | None = None,
    path: type[BaseModel] | None = None,
    body_media_type: str = "application/json",
    also: tuple[int, ...] = (),
) -> Callable[[H], H]:
    """Declare the handler's OpenAPI operation; use it beside ``@requires``."""
    operation = ApiOperation(
        summary,
        tag,
        response,
        status,
        query,
        body,
        errors,
        dict(content_types or {}),
        path,
        body_media_type,
        also,
    )

    def mark(handler: H) -> H:
        setattr(handler, _ATTRIBUTE, operation)
        return handler

    return mark


def operation_of(handler: object) -> ApiOperation | None:
    """The operation a handler declared, if any."""
    found = getattr(handler, _ATTRIBUTE, None)
    return found if isinstance(found, ApiOperation) else None
