"""``GET /api/v1/openapi.json`` (the OpenAPI 3.1 document) and ``GET /api/docs`` (its
reference page).

Both are public: they describe the API and hold no data, and tools (schemathesis,
client generators) as well as a browser need them without a token: a browser cannot
send a bearer token, and under ``/api/`` the dashboard accepts nothing else. Every
operation they describe still needs its token and role.

The document is built from the route table the first time it is asked for, after every
route is in place, and kept for the life of the app.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp_jinja2
import pydantic
from aiohttp import web

from posfleet.dashboard.access import public
from posfleet.dashboard.api_operations import api_operation
from posfleet.dashboard.openapi_document import build_openapi_document
from posfleet.dashboard.openapi_reference import reference_schemas, reference_tags
from posfleet.dashboard.query_params import refuse_unknown

OPENAPI_PATH = "/api/v1/openapi.json"
REFERENCE_PATH = "/api/docs"

_DOCUMENT_KEY = web.AppKey("openapi_document", dict)
"""Holds the built document (a dict filled on first use: the app is frozen by then)."""


class OpenApiDocument(pydantic.BaseModel):
    """An OpenAPI 3.1 document (its own specification describes the rest)."""

    model_config = pydantic.ConfigDict(extra="allow")

    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]
    components: dict[str, Any]


def openapi_document(app: web.Application) -> dict[str, Any]:
    """The app's document, built once."""
    holder: dict[str, Any] = app[_DOCUMENT_KEY]
    if "document" not in holder:
        holder["document"] = build_openapi_document(app)
    document: dict[str, Any] = holder["document"]
    return document


@api_operation("This OpenAPI 3.1 document", tag="meta", response=OpenApiDocument, errors=(400,))
@public
async def openapi_json(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of ``/api/v1``, generated from the handlers' models."""
    refuse_unknown(request.query, ())
    return web.Response(
        text=json.dumps(openapi_document(request.app)),
        content_type="application/json",
    )


@public
async def api_reference(request: web.Request) -> web.Response:
    """The reference page: every operation, its role, parameters, body and answers."""
    refuse_unknown(request.query, ())
    document = openapi_document(request.app)
    context = {
        "user": None,
        "csrf_token": "",
        "scripts": [],
        "info": document["info"],
        "openapi_path": OPENAPI_PATH,
        "tags": reference_tags(document),
        "schemas": reference_schemas(document),
    }
    return aiohttp_jinja2.render_template("api_reference.html", request, context)


def add_routes(app: web.Application) -> None:
    """Register the document and the reference page (after :func:`setup_templates`)."""
    app[_DOCUMENT_KEY] = {}
    app.router.add_get(OPENAPI_PATH, openapi_json)
    app.router.add_get(REFERENCE_PATH, api_reference)
