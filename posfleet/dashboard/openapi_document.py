"""The OpenAPI 3.1 document of ``/api/v1``, generated from the running app's route table.

Nothing here is written by hand per route: the paths come from the routes, the roles
from each handler's ``@requires`` (:func:`~posfleet.dashboard.access.access_rule`), the
parameters, bodies and answers from its ``@api_operation`` pydantic models. A route
under ``/api/v1`` that declares no operation is left out of the document and listed by
:func:`undocumented_routes` (a test keeps that list empty).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Literal

import pydantic
from aiohttp import web
from pydantic.json_schema import JsonSchemaMode, models_json_schema

import posfleet
from posfleet.dashboard.access import AccessRule, access_rule
from posfleet.dashboard.api_operations import ApiOperation, operation_of
from posfleet.dashboard.error_rendering import PROBLEM_CONTENT_TYPE

API_V1_PREFIX = "/api/v1"
OPENAPI_VERSION = "3.1.0"
REF_TEMPLATE = "#/components/schemas/{model}"
BEARER_SCHEME = "bearerToken"
_PATH_PARAMETER = re.compile(r"\{(\w+)\}")
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


class InvalidParam(pydantic.BaseModel):
    """One refused parameter or body field, and why."""

    name: str
    reason: str


class Problem(pydantic.BaseModel):
    """An RFC 9457 problem: every refusal and failure of the API has this body."""

    type: str = "about:blank"
    title: str
    """The HTTP status phrase."""
    status: int
    detail: str
    """A sentence for a person."""
    code: str
    """A stable word for a program: ``invalid_parameter``, ``not_found``, ``forbidden``..."""
    invalid_params: list[InvalidParam] | None = None
    """Each refused parameter with its reason (400s about parameters and bodies)."""


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One ``/api/v1`` route: method, path template, handler, role and operation."""

    method: str
    path: str
    handler: object
    rule: AccessRule | None
    operation: ApiOperation | None

    @property
    def path_parameters(self) -> list[str]:
        """The ``{name}`` parts of the path, in order."""
        return _PATH_PARAMETER.findall(self.path)


def api_routes(app: web.Application) -> Iterator[ApiRoute]:
    """Every ``/api/v1`` route of ``app`` (HEAD, which aiohttp adds to each GET, left out)."""
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        path = resource.canonical
        if route.method not in _METHODS or not (
            path == API_V1_PREFIX or path.startswith(API_V1_PREFIX + "/")
        ):
            continue
        handler = route.handler
        yield ApiRoute(route.method, path, handler, access_rule(handler), operation_of(handler))


def undocumented_routes(app: web.Application) -> list[str]:
    """``METHOD /path`` of every ``/api/v1`` route without an ``@api_operation``."""
    return [f"{r.method} {r.path}" for r in api_routes(app) if r.operation is None]


def _operation_id(route: ApiRoute, taken: set[str]) -> str:
    module = getattr(route.handler, "__module__", "api").rsplit(".", 1)[-1]
    name = getattr(route.handler, "__name__", "handler").removesuffix("_endpoint")
    found = f"{module}.{name}"
    if found in taken:
        found = f"{found}.{route.method.lower()}"
    taken.add(found)
    return found


def _role_text(rule: AccessRule | None) -> str:
    if rule is None or rule.role is None:
        return "Public: no token needed."
    return f"Needs the `{rule.role.value}` role or a higher one."


def _collect_models(
    routes: list[ApiRoute],
) -> list[tuple[type[pydantic.BaseModel], JsonSchemaMode]]:
    pairs: dict[tuple[type[pydantic.BaseModel], JsonSchemaMode], None] = {
        (Problem, "serialization"): None
    }
    for route in routes:
        op = route.operation
        if op is None:
            continue
        if op.response is not None:
            pairs[(op.response, "serialization")] = None
        for model in (op.query, op.body, op.path):
            if model is not None:
                pairs[(model, "validation")] = None
    return list(pairs)


class _Schemas:
    """The components' schemas, and each model's reference into them."""

    def __init__(self, routes: list[ApiRoute]) -> None:
        refs, top = models_json_schema(_collect_models(routes), ref_template=REF_TEMPLATE)
        self.refs = refs
        self.components: dict[str, Any] = dict(top.get("$defs", {}))
        self.parameter_models: set[str] = set()

    def ref(self, model: type[pydantic.BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        """``{"$ref": ...}`` to ``model``'s schema."""
        return dict(self.refs[(model, mode)])

    def fields(self, model: type[pydantic.BaseModel]) -> tuple[dict[str, Any], set[str]]:
        """The properties and required names of a parameter model (query or path)."""
        name = self.refs[(model, "validation")]["$ref"].rsplit("/", 1)[-1]
        self.parameter_models.add(name)
        schema = self.components[name]
        return dict(schema.get("properties", {})), set(schema.get("required", ()))


def _parameters(route: ApiRoute, op: ApiOperation, schemas: _Schemas) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    declared: dict[str, Any] = {}
    if op.path is not None:
        declared, _ = schemas.fields(op.path)
    for name in route.path_parameters:
        schema = dict(declared.get(name, {"type": "string"}))
        found.append(_parameter(name, "path", schema, required=True))
    if op.query is not None:
        properties, required = schemas.fields(op.query)
        for name, schema in properties.items():
            found.append(_parameter(name, "query", dict(schema), required=name in required))
    return found


def _parameter(
    name: str, where: Literal["path", "query"], schema: dict[str, Any], *, required: bool
) -> dict[str, Any]:
    parameter: dict[str, Any] = {"name": name, "in": where, "required": required}
    description = schema.pop("description", None)
    schema.pop("title", None)
    if description:
        parameter["description"] = description
    parameter["schema"] = schema
    return parameter


def _responses(route: ApiRoute, op: ApiOperation, schemas: _Schemas) -> dict[str, Any]:
    success: dict[str, Any] = {"description": HTTPStatus(op.status).phrase}
    content: dict[str, Any] = {}
    if op.response is not None:
        content["application/json"] = {"schema": schemas.ref(op.response, "serialization")}
    for media_type, description in op.content_types.items():
        content[media_type] = {"schema": {"type": "string", "description": description}}
    if content:
        success["content"] = content
    responses: dict[str, Any] = {str(op.status): success}
    for status in op.also:
        responses[str(status)] = {**success, "description": HTTPStatus(status).phrase}
    errors = set(op.errors)
    if route.rule is not None and route.rule.role is not None:
        errors |= {401, 403}
    problem = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": REF_TEMPLATE.format(model="Problem")}}}
    for status in sorted(errors):
        responses[str(status)] = {"description": HTTPStatus(status).phrase, "content": problem}
    return responses


def _operation(
    route: ApiRoute, op: ApiOperation, schemas: _Schemas, taken: set[str]
) -> dict[str, Any]:
    doc = inspect.getdoc(route.handler) or ""
    described = "\n\n".join(part for part in (doc, _role_text(route.rule)) if part)
    operation: dict[str, Any] = {
        "operationId": _operation_id(route, taken),
        "summary": op.summary,
        "description": described,
        "tags": [op.tag],
    }
    role = route.rule.role if route.rule is not None else None
    operation["security"] = [{BEARER_SCHEME: []}] if role is not None else []
    operation["x-posfleet-role"] = role.value if role is not None else None
    parameters = _parameters(route, op, schemas)
    if parameters:
        operation["parameters"] = parameters
    if op.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {op.body_media_type: {"schema": schemas.ref(op.body, "validation")}},
        }
    operation["responses"] = _responses(route, op, schemas)
    return operation


def _drop_parameter_models(document: dict[str, Any], schemas: _Schemas) -> None:
    """Query and path models live in the parameters; keep them out of the components
    unless another schema refers to them."""
    components = document["components"]["schemas"]
    for name in schemas.parameter_models:
        text = json.dumps(
            {
                **document,
                "components": {"schemas": {k: v for k, v in components.items() if k != name}},
            }
        )
        if f'"{REF_TEMPLATE.format(model=name)}"' not in text:
            components.pop(name, None)


def build_openapi_document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every documented ``/api/v1`` route of ``app``."""
    routes = list(api_routes(app))
    schemas = _Schemas(routes)
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for route in routes:
        if route.operation is None:
            continue
        operations = paths.setdefault(route.path, {})
        operations[route.method.lower()] = _operation(route, route.operation, schemas, taken)
    tags = sorted({op["tags"][0] for ops in paths.values() for op in ops.values()})
    document: dict[str, Any] = {
        "openapi": OPENAPI_VERSION,
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "info": {
            "title": "posfleet central API",
            "version": posfleet.__version__,
            "description": (
                "The fleet, incidents, firmware and support console as JSON. "
                "Send an API token as `Authorization: Bearer <token>`; errors are RFC 9457 "
                "problems (`application/problem+json`); lists page by cursor."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": tag} for tag in tags],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.components.items())),
            "securitySchemes": {
                BEARER_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`posfleet token create` or /admin/tokens).",
                }
            },
        },
    }
    _drop_parameter_models(document, schemas)
    return document
